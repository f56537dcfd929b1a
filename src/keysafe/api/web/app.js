// keysafe owner page: plain JavaScript, no build step, no third-party code (works offline).
//
// Safety rules this file keeps:
// - Server data is only ever put into the page as text (textContent / Text nodes), never parsed
//   as HTML, so an agent cannot inject markup through a summary, a name or an audit detail.
// - The owner session lives in an HttpOnly cookie the page cannot read; the page only keeps the
//   CSRF token, which every non-GET request must carry.
// - The passphrase is read from the field, sent once, and the field is cleared right away.
"use strict";

const POLL_MS = 2000;
const AUDIT_LIMIT = 50;
const $ = (id) => document.getElementById(id);

// The CSRF token survives a reload of this tab (sessionStorage), not the closing of the tab.
let csrf = sessionStorage.getItem("ks_csrf");
let pollTimer = null;
let pollRound = 0; // bumped on each start/stop, so a poll still in flight never starts a 2nd loop
let pollFailed = false;
let current = "approvals";
const lastRendered = {}; // section -> JSON last drawn; unchanged data is not redrawn (keeps focus)
const approvalCards = new Map(); // approval id -> its <article>, so polling never resets a card

const KIND = {
  sign_transaction: "Sign a transaction",
  send_transaction: "Sign and send a transaction",
  transfer: "Send a transfer (keysafe builds the transaction)",
  sign_message: "Sign a message",
  sign_typed_data: "Sign typed data (EIP-712)",
  read_data: "Read stored data",
  http_request: "Call an API with a stored credential",
  release_credential: "Receive a credential's VALUE in a process (grants possession)",
  pairing: "Pair a remote sidecar: it becomes a new agent",
};
const AUTH = { token: "agent token", key: "Ed25519 signed requests" };

class ApiError extends Error {
  constructor(message, status, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// -- small helpers ---------------------------------------------------------------------------

// Build an element. Children that are strings become Text nodes: never interpreted as HTML.
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "onclick") node.addEventListener("click", value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function say(text, isError = false) {
  const box = $("message");
  box.textContent = text;
  box.classList.toggle("error", isError);
}

// Server times are UTC ISO strings; show them as "2026-11-23 16:14:44" (UTC, like the CLI).
function when(iso) {
  if (!iso) return "never";
  return String(iso).replace("T", " ").replace(/\.\d+/, "").replace("Z", "");
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = csrf || "";
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
  });
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  if (!res.ok) {
    const err = data && data.error;
    const text = err ? `${err.message} ${err.next ? "Next: " + err.next : ""}`.trim() : `The server answered ${res.status}.`;
    throw new ApiError(text, res.status, err && err.code);
  }
  return data;
}

// One place decides what a failed call means: a lost session goes back to the unlock form.
function fail(err) {
  if (err instanceof ApiError && err.status === 401) {
    showUnlock("Your session has ended. Enter the passphrase to continue.");
  } else {
    say(err.message || String(err), true);
  }
}

// -- unlock / lock -----------------------------------------------------------------------------

async function showUnlock(reason) {
  stopPolling();
  csrf = null;
  sessionStorage.removeItem("ks_csrf");
  $("app").hidden = true;
  $("lock").hidden = true;
  $("unlock").hidden = false;
  document.title = "keysafe — unlock";
  say(reason || "");
  try {
    const health = await api("GET", "/v1/health");
    $("vault-state").textContent = health.unlocked ? "Vault unlocked (sign in to manage it)" : "Vault locked";
  } catch {
    $("vault-state").textContent = "The keysafe server does not answer.";
  }
  $("passphrase").focus();
}

async function unlock(event) {
  event.preventDefault();
  const field = $("passphrase");
  const button = $("unlock-button");
  const passphrase = field.value;
  field.value = ""; // do not leave the passphrase in the page
  $("unlock-error").textContent = "";
  button.disabled = true;
  button.textContent = "Unlocking…";
  try {
    // The answer also holds a bearer session for the CLI; the page relies on the cookie instead.
    const data = await api("POST", "/v1/owner/login", { passphrase });
    csrf = data.csrf;
    sessionStorage.setItem("ks_csrf", csrf);
    showApp();
  } catch (err) {
    $("unlock-error").textContent = err.message;
    field.focus();
  } finally {
    button.disabled = false;
    button.textContent = "Unlock";
  }
}

async function lockVault() {
  try {
    await api("POST", "/v1/owner/lock");
    await api("POST", "/v1/owner/logout");
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) return fail(err);
  }
  showUnlock("Vault locked: the master key is wiped from the server's memory.");
}

function showApp() {
  $("unlock").hidden = true;
  $("app").hidden = false;
  $("lock").hidden = false;
  say("");
  for (const key of Object.keys(lastRendered)) delete lastRendered[key];
  route();
  startPolling();
  $(`${current}-title`).focus(); // the unlock button just vanished: move focus somewhere useful
}

// -- navigation: #approvals, #agents, #wallets, #audit ----------------------------------------

function route() {
  const wanted = location.hash.slice(1);
  current = ["approvals", "agents", "wallets", "audit"].includes(wanted) ? wanted : "approvals";
  for (const section of document.querySelectorAll("[data-section]")) section.hidden = section.id !== current;
  for (const link of document.querySelectorAll("[data-tab]")) {
    if (link.dataset.tab === current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if ($("app").hidden) return;
  refresh(current, true).catch(fail);
  if (current === "audit") loadAgentFilter().catch(fail);
}

// -- polling -----------------------------------------------------------------------------------

function startPolling() {
  stopPolling();
  poll(pollRound);
}

function stopPolling() {
  pollRound += 1;
  clearTimeout(pollTimer);
  pollTimer = null;
}

// setTimeout after each round (not setInterval), so a slow server never gets overlapping polls.
async function poll(round) {
  try {
    const status = await api("GET", "/v1/owner/status");
    if (!status.unlocked) {
      showUnlock("The vault was locked (idle lock, or `keysafe lock`). Unlock to continue.");
      return;
    }
    const n = (count, one, many) => `${count} ${count === 1 ? one : many}`;
    $("vault-state").textContent = [
      "Vault unlocked",
      n(status.wallets, "wallet", "wallets"),
      n(status.agents, "agent", "agents"),
      n(status.credentials, "credential", "credentials"),
      n(status.audit_entries, "audit entry", "audit entries"),
    ].join(" · ");
    renderRotationsDue(status.rotations_due || []);
    await refresh("approvals");
    await refresh("grants");
    // Wallet addresses are re-derived from their keys on each listing: load them on demand only.
    if (current === "agents" || current === "audit") await refresh(current);
    if (pollFailed) say(""); // the server is back: clear the old error
    pollFailed = false;
  } catch (err) {
    pollFailed = true;
    fail(err);
  }
  if (round === pollRound && !$("app").hidden) pollTimer = setTimeout(() => poll(round), POLL_MS);
}

// What the owner's rotation policy says to replace now (service/rotation_due.py): what, whose,
// why, and the command that does it. Nothing is replaced by itself: the agent holds it.
function renderRotationsDue(items) {
  const list = $("rotations-due");
  list.replaceChildren(
    ...items.map((d) =>
      el(
        "li",
        {},
        `Rotation due: ${d.what} of ${d.agent}${d.credential ? ` (${d.credential})` : ""}, ${d.why}. `,
        el("code", { text: d.fix }),
      ),
    ),
  );
  list.hidden = items.length === 0;
}

// Each section: a path to GET, or a function that loads its data; and how to draw it.
const SOURCES = {
  approvals: ["/v1/owner/approvals", renderApprovals],
  grants: ["/v1/owner/grants", renderGrants],
  agents: [loadAgents, renderAgents],
  wallets: ["/v1/owner/wallets", renderWallets],
  audit: [() => api("GET", `/v1/owner/audit?${auditQuery({ limit: AUDIT_LIMIT })}`), renderAudit],
};

async function refresh(section, force = false) {
  const [source, render] = SOURCES[section];
  const data = typeof source === "function" ? await source() : await api("GET", source);
  const json = JSON.stringify(data);
  if (!force && lastRendered[section] === json) return;
  lastRendered[section] = json;
  render(data);
}

// -- approvals ---------------------------------------------------------------------------------

function renderApprovals(items) {
  const list = $("approval-list");
  const pending = new Set(items.map((a) => a.approval_id));
  for (const [id, card] of approvalCards) {
    if (!pending.has(id)) {
      card.remove();
      approvalCards.delete(id);
    }
  }
  for (const a of items) {
    const card = approvalCards.get(a.approval_id);
    if (!card) {
      const fresh = approvalCard(a);
      approvalCards.set(a.approval_id, fresh);
      list.append(fresh);
    } else {
      // Only the budget moves while a card waits (other requests spend); the rest, and the
      // owner's half-typed reason, stay as they are.
      const old = card.querySelector("table.effect");
      const now = budgetEffect(a);
      if (old && now) old.replaceWith(now);
    }
  }
  $("approvals-empty").hidden = items.length > 0;
  $("pending-count").textContent = items.length ? `(${items.length})` : "";
  document.title = items.length ? `(${items.length}) keysafe — approvals waiting` : "keysafe";
}

// Where the "raw request" fold says what approving does with it: only signing kinds sign.
const RAW = {
  sign_transaction: "Raw request (exactly what will be signed)",
  send_transaction: "Raw request (exactly what will be signed and sent)",
  sign_message: "Raw request (exactly what will be signed)",
  sign_typed_data: "Raw request (exactly what will be signed)",
  http_request: "Raw request (exactly what will be sent, with the credential attached)",
};

// An address in full, never shortened: look-alike addresses share their first and last
// characters, so those are emphasised for comparing, and the middle is still all there.
function fullAddress(address) {
  const text = String(address);
  const head = text.startsWith("0x") ? 6 : 4;
  if (text.length <= head + 4) return el("code", { class: "address" }, el("strong", { text }));
  return el("code", { class: "address", title: text },
    el("strong", { text: text.slice(0, head) }), text.slice(head, -4), el("strong", { text: text.slice(-4) }));
}

function nativeOf(chain) {
  return String(chain || "").startsWith("solana") ? "SOL" : "ETH";
}

// Facts decoded by keysafe from what would be signed or sent (not the agent's claims).
function intentFacts(intent) {
  const facts = [];
  const add = (label, value) => facts.push(el("dt", { text: label }), el("dd", {}, value));
  if (intent.amount && intent.asset) add("Amount", `${intent.amount} ${intent.asset}`);
  if (intent.to) add("Recipient", fullAddress(intent.to));
  if (intent.spender) add("Spender", fullAddress(intent.spender));
  if (intent.contract) add("Contract", fullAddress(intent.contract));
  if (intent.function) add("Function", intent.function);
  if (intent.fee) add("Network fee", `up to ${intent.fee} ${nativeOf(intent.chain)}`);
  if (intent.url) add("Calls", `${intent.method || ""} ${intent.url}`.trim());
  if (intent.credential) add("Credential", intent.credential);
  if (intent.data) add("Data", intent.data + (intent.fields ? ` (fields: ${intent.fields.join(", ")})` : ""));
  return facts;
}

// Budget windows before and after, as the gate will judge the approved request (server side).
function budgetEffect(a) {
  if (!a.budget || a.budget.length === 0) return null;
  return el("table", { class: "budget effect" },
    el("caption", { text: "Budget left: before and after approving" }),
    el("thead", {}, el("tr", {}, ...["Rule", "Window", "Limit", "Before", "After"].map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, ...a.budget.map((w) => {
      const unit = w.asset || "actions";
      return el("tr", { class: w.ok ? "" : "over" },
        el("td", { text: w.rule }),
        el("td", { text: `per ${w.window}` }),
        el("td", { text: `${w.limit} ${unit}` }),
        el("td", { text: `${w.left} ${unit}` }),
        el("td", { text: w.ok ? `${w.after} ${unit}` : `over the limit: approving will fail` }));
    })));
}

function approvalCard(a) {
  const titleId = `t-${a.approval_id}`;
  const selectId = `for-${a.approval_id}`;
  const reasonId = `why-${a.approval_id}`;
  const intent = (a.request && a.request.intent) || {};
  const card = el("article", { class: "card approval", "aria-labelledby": titleId, "data-id": a.approval_id });
  const reason = el("input", { id: reasonId, type: "text", maxlength: "300", autocomplete: "off", class: "reason" });
  const approve = el("button", { type: "button", class: "primary", "aria-describedby": titleId, text: "Approve" });
  const deny = el("button", { type: "button", class: "danger", "aria-describedby": titleId, text: "Deny" });
  const buttons = [approve, deny];
  // A pairing is approved with the four words the sidecar printed, typed by the owner: the
  // server checks them against its own, and other words deny the pairing.
  const wordsId = `words-${a.approval_id}`;
  const typed = a.kind === "pairing"
    ? el("input", { id: wordsId, type: "text", maxlength: "200", autocomplete: "off", class: "words", spellcheck: "false" })
    : null;
  approve.addEventListener("click", () => decide(a, "approve", buttons, undefined, undefined, typed ? typed.value : undefined));
  deny.addEventListener("click", () => decide(a, "deny", buttons, undefined, reason.value));

  const actions = el("div", { class: "actions" },
    typed ? el("span", { class: "words-group" }, el("label", { for: wordsId, text: "The four words the sidecar shows" }), typed) : null,
    approve, deny,
    el("span", { class: "reason-group" }, el("label", { for: reasonId, text: "Reason for the agent (optional)" }), reason));
  // "Approve for a while" only where a grant can ever let such a request pass (server decides).
  if (a.grantable) {
    const durations = el("select", { id: selectId },
      el("option", { value: "900", text: "15 minutes" }),
      el("option", { value: "3600", text: "1 hour", selected: "" }),
      el("option", { value: "86400", text: "1 day" }));
    const approveFor = el("button", { type: "button", class: "secondary", "aria-describedby": titleId, text: "Approve for 1 hour" });
    durations.addEventListener("change", () => {
      approveFor.textContent = `Approve for ${durations.selectedOptions[0].textContent}`;
    });
    approveFor.addEventListener("click", () => decide(a, "approve", buttons, Number(durations.value)));
    buttons.push(approveFor);
    actions.append(el("span", { class: "for-group" }, el("label", { for: selectId, text: "or approve and allow requests like this for" }), durations, approveFor));
  }

  // DOM append() would print a null as the text "null": the optional parts are dropped first.
  card.append(...[
    el("h3", { id: titleId, text: a.summary }),
    a.kind === "pairing" && Array.isArray(a.words)
      ? el("p", { class: "pairing-words" }, "This vault's words: ", el("strong", { text: a.words.join(" ") }),
        ". Approve only if the sidecar shows exactly these, and type them below.")
      : null,
    a.description ? el("blockquote", { class: "said" }, el("span", { class: "said-who", text: `${a.agent} says: ` }), el("q", { text: a.description })) : null,
    el("dl", { class: "facts" },
      el("dt", { text: "Agent" }), el("dd", { text: a.agent }),
      el("dt", { text: "Asks to" }), el("dd", { text: KIND[a.kind] || a.kind }),
      ...intentFacts(intent),
      el("dt", { text: "Rule" }), el("dd", { text: a.rule || "no rule (asked by default)" }),
      el("dt", { text: "Approval id" }), el("dd", {}, el("code", { text: a.approval_id })),
      el("dt", { text: "Asked at" }), el("dd", { text: `${when(a.created_at)} UTC` }),
      el("dt", { text: "Expires at" }), el("dd", { text: `${when(a.expires_at)} UTC` })),
    budgetEffect(a),
    el("details", {},
      el("summary", { text: RAW[a.kind] || "Raw request" }),
      el("pre", { text: JSON.stringify(a.request, null, 2) })),
    actions,
  ].filter((part) => part !== null && part !== undefined));
  if (a.grantable) {
    card.append(el("p", { class: "hint small", text: `“Approve for” also lets ${a.agent}'s requests of this same shape (same action, wallet, recipient, token, contract, function or host) pass without asking until then, still within every limit. Anything else rule “${a.rule}” asks about still comes to you.` }));
  } else {
    card.append(el("p", { class: "hint small", text: "You decide this kind of request every time: it cannot be approved for a while." }));
  }
  return card;
}

async function decide(a, verdict, buttons, forSeconds, reason, words) {
  for (const b of buttons) b.disabled = true;
  say(verdict === "approve" ? `Approving: ${a.summary}…` : `Denying: ${a.summary}…`);
  try {
    const path = `/v1/owner/approvals/${encodeURIComponent(a.approval_id)}/${verdict}`;
    const body = verdict === "approve"
      ? { for_seconds: forSeconds ?? null, ...(words !== undefined ? { words } : {}) }
      : { reason: (reason || "").trim() || null };
    const done = await api("POST", path, body);
    if (done.status === "approved") say(`Approved: ${a.summary}. ${a.agent} gets the result.`);
    else if (done.status === "denied") {
      const told = done.reason ? ` ${a.agent} is told: “${done.reason}”` : "";
      say(`Denied: ${a.summary}. Nothing was signed and no budget was used.${told}`);
    } else {
      const err = done.result && done.result.error;
      say(`Approved, but it could not run: ${err ? err.message : done.status}`, true);
    }
  } catch (err) {
    fail(err);
  }
  await refresh("approvals", true).catch(fail);
  await refresh("grants", true).catch(fail);
  $("approvals-title").focus(); // the card (and the focused button) is gone
}

// -- grants ------------------------------------------------------------------------------------

function renderGrants(items) {
  $("grant-rows").replaceChildren(...items.map((g) => el("tr", {},
    el("td", { text: g.agent }),
    el("td", { text: g.rule }),
    el("td", {}, el("code", { text: g.summary })),
    el("td", { text: when(g.until) }),
    el("td", {}, el("button", { type: "button", class: "danger", text: "Revoke", "aria-label": `Revoke grant ${g.id} of ${g.agent}`, onclick: () => revokeGrant(g) })))));
  $("grant-table").hidden = items.length === 0;
  $("grants-empty").hidden = items.length > 0;
}

async function revokeGrant(g) {
  try {
    await api("POST", `/v1/owner/grants/${encodeURIComponent(g.id)}/revoke`);
    say(`Grant revoked: ${g.agent}'s requests of that shape ask you again.`);
  } catch (err) {
    fail(err);
  }
  await refresh("grants", true).catch(fail);
}

// -- agents ------------------------------------------------------------------------------------

function renderAgents({ agents, spending }) {
  const list = $("agent-list");
  list.replaceChildren(...agents.map((a) => agentCard(a, spending)));
  $("agents-empty").hidden = agents.length > 0;
}

let spendRange = "24h";

async function loadAgents() {
  const [agents, spending] = await Promise.all([
    api("GET", "/v1/owner/agents"),
    api("GET", `/v1/owner/spending?range=${spendRange}`),
  ]);
  return { agents, spending };
}

// The SVG namespace, taken from an <svg> the HTML parser made (no URL is written in this file).
function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS($("svg-ns").namespaceURI, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

// One bar per bucket. Heights use floating point for the picture only: the exact decimal
// amounts are in the text (total, and each bar's tooltip).
function spendChart(series, spending) {
  const W = 640, H = 150, PAD = 20;
  const values = series.points.map(Number);
  const top = Math.max(...values, 0);
  const n = values.length;
  const step = (W - PAD) / n;
  const bars = values.map((v, i) => {
    const h = top > 0 ? ((H - 2 * PAD) * v) / top : 0;
    const x = PAD + i * step;
    return svg("rect", { x: x.toFixed(1), y: (H - PAD - h).toFixed(1), width: Math.max(step - 2, 1).toFixed(1), height: h.toFixed(1), class: v > 0 ? "bar" : "bar zero" },
      svg("title", {}, `${when(spending.buckets[i])} UTC: ${series.points[i]} ${series.symbol}`));
  });
  const span = spending.range === "7d" ? "7 days ago" : "24 hours ago";
  const label = `${series.symbol}${series.chain ? ` on ${series.chain}` : ""}`;
  return el("figure", { class: "spend" },
    svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${label}: ${series.total} ${series.symbol} in the last ${spending.range === "7d" ? "7 days" : "24 hours"}`, class: "chart" },
      svg("line", { x1: PAD, y1: H - PAD, x2: W, y2: H - PAD, class: "axis" }),
      svg("text", { x: PAD, y: 14, class: "tick" }, top > 0 ? `peak ${series.points[values.indexOf(top)]} ${series.symbol}` : ""),
      svg("text", { x: PAD, y: H - 4, class: "tick" }, span),
      svg("text", { x: W, y: H - 4, class: "tick end" }, "now"),
      ...bars),
    el("figcaption", {}, el("strong", { text: `${series.total} ${series.symbol}` }),
      `${series.chain ? ` on ${series.chain}` : ""} spent in the last ${spending.range === "7d" ? "7 days" : "24 hours"}`));
}

function spendingOf(a, spending) {
  const mine = (spending && spending.series || []).filter((s) => s.agent === a.name);
  if (mine.length === 0) return el("p", { class: "empty", text: `Nothing booked in the last ${spendRange === "7d" ? "7 days" : "24 hours"}.` });
  return el("div", { class: "spend-list" }, ...mine.map((s) => spendChart(s, spending)));
}

function setSpendRange(range) {
  spendRange = range;
  for (const b of document.querySelectorAll("[data-range]")) b.setAttribute("aria-pressed", String(b.dataset.range === range));
  refresh("agents", true).catch(fail);
}

function agentCard(a, spending) {
  const titleId = `agent-${a.name}`;
  const rules = a.rules.length
    ? el("ul", { class: "rules" }, ...a.rules.map((r) => el("li", { text: r })))
    : el("p", { class: "empty", text: "No policy: every request is denied." });
  const budget = a.budget.length ? budgetTable(a) : el("p", { class: "empty", text: "No budget windows in this policy." });
  const actions = el("div", { class: "actions" });
  if (a.status !== "revoked") {
    const pause = a.status === "paused" ? "resume" : "pause";
    actions.append(
      el("button", { type: "button", class: "secondary", "aria-describedby": titleId, text: pause === "pause" ? "Pause" : "Resume", onclick: () => agentAction(a.name, pause) }),
      el("button", { type: "button", class: "danger", "aria-describedby": titleId, text: "Revoke", onclick: () => agentAction(a.name, "revoke") }),
    );
  }
  return el("article", { class: "card agent", "aria-labelledby": titleId },
    el("h3", { id: titleId }, a.name, " ", el("span", { class: `badge ${a.status}`, text: a.status })),
    el("dl", { class: "facts" },
      el("dt", { text: "Signs in with" }), el("dd", { text: AUTH[a.auth] || a.auth }),
      el("dt", { text: "Last seen" }), el("dd", { text: a.last_seen ? `${when(a.last_seen)} UTC` : "never" }),
      el("dt", { text: "Added" }), el("dd", { text: `${when(a.created_at)} UTC` }),
      el("dt", { text: "Policy hash" }), el("dd", {}, el("code", { text: a.policy_hash ? a.policy_hash.slice(0, 16) + "…" : "none", title: a.policy_hash || "" }))),
    el("h4", { text: "Policy" }), rules,
    el("h4", { text: "Budget left" }), budget,
    el("h4", { text: "Spending" }), spendingOf(a, spending),
    actions);
}

function budgetTable(a) {
  return el("table", { class: "budget" },
    el("caption", { class: "visually-hidden", text: `Budget windows of ${a.name}` }),
    el("thead", {}, el("tr", {}, ...["Rule", "Window", "Limit", "Left", ""].map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, ...a.budget.map((w) => {
      const unit = w.asset || "actions";
      return el("tr", {},
        el("td", { text: w.rule }),
        el("td", { text: `per ${w.window}` }),
        el("td", { text: `${w.limit} ${unit}` }),
        el("td", { text: `${w.left} ${unit}` }),
        // The meter is only a picture; the exact decimal amounts are in the text beside it.
        el("td", {}, el("meter", { min: "0", max: w.limit, value: w.left, "aria-hidden": "true" })));
    })));
}

async function agentAction(name, action) {
  if (action === "revoke" && !confirm(`Revoke agent “${name}”? Its token stops working at once, and revoking is final.`)) return;
  try {
    const view = await api("POST", `/v1/owner/agents/${encodeURIComponent(name)}/${action}`);
    say(`Agent ${name} is now ${view.status}.`);
  } catch (err) {
    fail(err);
  }
  await refresh("agents", true).catch(fail);
}

// -- wallets -----------------------------------------------------------------------------------

function renderWallets(items) {
  $("wallet-rows").replaceChildren(...items.map((w) => el("tr", {},
    el("th", { scope: "row", text: w.name }),
    el("td", { text: w.chain === "evm" ? "EVM" : w.chain === "solana" ? "Solana" : w.chain }),
    el("td", {}, el("code", { class: "address", text: w.address })),
    // Balances come from the chains' nodes when an RPC is configured (cached by the server).
    el("td", { text: (w.balances || []).map((b) => b.error
      ? `${b.chain}: ${b.error}` : `${b.chain}: ${b.balance} ${b.asset}`).join("; ") || "no RPC configured" }),
    el("td", { text: w.source === "derived" ? `recovery phrase, account ${w.index}` : w.source }),
    el("td", { text: when(w.created_at) }))));
  $("wallets-empty").hidden = items.length > 0;
  $("wallet-table").hidden = items.length === 0;
}

// -- audit -------------------------------------------------------------------------------------

// Hashes (64 hex digits) are shortened for reading; the full value stays in the tooltip.
// Addresses are never shortened: look-alike addresses share their first and last digits.
function detailText(details) {
  return Object.entries(details || {}).map(([k, v]) => {
    let text = typeof v === "object" && v !== null ? JSON.stringify(v) : String(v);
    if (/^(0x)?[0-9a-f]{64,}$/i.test(text)) text = `${text.slice(0, 10)}…${text.slice(-4)}`;
    return `${k}: ${text}`;
  }).join(" · ");
}

// The audit filters last applied (a half-typed action is not polled with); empty ones left out.
let auditFilters = {};

function auditQuery(extra = {}) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries({ ...extra, ...auditFilters })) params.set(key, String(value));
  return params.toString();
}

function applyAuditFilters(event) {
  if (event) event.preventDefault();
  const action = $("filter-action");
  if (action.value && !action.checkValidity()) {
    say("An action is lower-case words joined by dots, like approval.deny, or approval. for all of them.", true);
    return;
  }
  auditFilters = {};
  for (const key of ["agent", "action", "outcome"]) {
    const value = $(`filter-${key}`).value.trim();
    if (value) auditFilters[key] = value;
  }
  $("audit-export").href = `/v1/owner/audit/export?${auditQuery()}`;
  const any = Object.keys(auditFilters).length > 0;
  $("audit-caption").textContent = any ? `Newest ${AUDIT_LIMIT} matching entries, newest first` : `Newest ${AUDIT_LIMIT} entries, newest first`;
  refresh("audit", true).catch(fail);
}

// The agent filter lists the vault's agents; refreshed whenever the audit section opens.
async function loadAgentFilter() {
  const select = $("filter-agent");
  const chosen = select.value;
  const agents = await api("GET", "/v1/owner/agents");
  select.replaceChildren(el("option", { value: "", text: "any agent" }),
    ...agents.map((a) => el("option", { value: a.name, text: a.name })));
  select.value = agents.some((a) => a.name === chosen) ? chosen : "";
}

function renderAudit(entries) {
  const rows = entries.slice().reverse().map((e) => el("tr", {},
    el("td", { text: String(e.seq) }),
    el("td", { class: "nowrap", text: when(e.time) }),
    el("td", { text: e.actor }),
    // Action, target and details share one cell so the table fits a laptop screen.
    el("td", {},
      el("div", {}, el("strong", { text: e.action }), " ", el("span", { class: "target", text: e.target })),
      el("div", { class: "details", text: detailText(e.details), title: JSON.stringify(e.details || {}) })),
    el("td", {}, el("span", { class: `outcome ${e.outcome}`, text: e.outcome }))));
  $("audit-rows").replaceChildren(...rows);
  $("audit-empty").hidden = entries.length > 0;
}

// Entries written while the vault was locked (or by someone editing its file) carry no seal:
// the owner reads them here, and seals exactly the ones shown.
async function showUnsealed(out) {
  const entries = await api("GET", "/v1/owner/audit/unsealed");
  const seqs = entries.map((e) => e.seq);
  const list = el("ul", { class: "unsealed" }, ...entries.map((e) => el("li", {
    text: `#${e.seq} ${when(e.time)} ${e.actor} ${e.action} ${e.target} ${e.outcome} ${detailText(e.details)}`,
  })));
  const seal = el("button", { type: "button", id: "seal-unsealed", text: `Seal these ${seqs.length} entries` });
  seal.addEventListener("click", async () => {
    try {
      await api("POST", "/v1/owner/audit/seal", { seqs });
      await verifyChain();
    } catch (err) {
      fail(err);
    }
  });
  out.replaceChildren(
    el("span", { text: `${seqs.length} entries were written while the vault was locked, or by someone editing its file. ` +
      "Seal them if you recognise them; keep a copy of the vault as evidence if you do not." }),
    list, seal);
  out.classList.add("warn");
}

async function verifyChain() {
  const out = $("verify-result");
  out.className = "verify-result";
  out.textContent = "Verifying…";
  try {
    const r = await api("GET", "/v1/owner/audit/verify");
    if (r.ok) {
      const seals = r.keyed ? " and every seal (keyed with the vault's audit key)" : "";
      out.textContent = `Chain OK: ${r.entries} entries; every hash link${seals} checks out.`;
      out.classList.add("ok");
    } else if (r.unsealed) {
      await showUnsealed(out);
    } else {
      out.textContent = `Chain broken at entry #${r.first_bad_seq}: ${r.problem || "it does not match"}.`;
      out.classList.add("bad");
    }
  } catch (err) {
    out.textContent = "";
    fail(err);
  }
}

// -- start -------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("unlock-form").addEventListener("submit", unlock);
  $("lock").addEventListener("click", lockVault);
  $("verify").addEventListener("click", verifyChain);
  $("audit-filters").addEventListener("submit", applyAuditFilters);
  $("audit-filters").addEventListener("reset", () => setTimeout(applyAuditFilters, 0));
  for (const id of ["filter-agent", "filter-outcome"]) $(id).addEventListener("change", () => applyAuditFilters());
  for (const b of document.querySelectorAll("[data-range]")) b.addEventListener("click", () => setSpendRange(b.dataset.range));
  window.addEventListener("hashchange", route);
  // Only a tab that logged in has the CSRF token; without it the owner must unlock again.
  if (csrf) showApp();
  else showUnlock();
});
