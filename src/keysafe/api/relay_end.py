"""The vault's end of the relay (a surface: the agent API, reached through the relay):
`keysafe serve --relay URL` connects out and answers sidecars.

For each envelope the relay delivers, in the order delivered:
1. open it (HPKE to the vault's key, signed by the sender: a claim by the key it carries, a
   request by the paired sidecar's key) and check it is fresh, not replayed, not reordered
   (`envelope.Freshness`); a refused one is acknowledged to the relay (dropped) and audited;
2. a claim goes to `service/pairing.claim`; a request from a paired sidecar whose agent is not
   revoked runs through the vault's own agent API, in this process, as that agent, path for
   path: the same gate, policy, budgets and audit as a local agent's request;
3. the answer is sealed to the sidecar and sent back with the request's id.

A request id is answered once: a retry of it (the sidecar sends again when an answer is late,
e.g. across a relay restart) gets the first answer again, so nothing runs twice.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
from pydantic import ValidationError

from keysafe import wire
from keysafe.audit.outcome import Outcome
from keysafe.errors import STATUS, ErrorCode, NotFoundError, PayloadTooLargeError
from keysafe.relay import envelope
from keysafe.relay.envelope import Freshness, Identity, Kind, Message, PeerKeys, Sender
from keysafe.relay.forwarded import RelayedRequest, RelayedResponse, agent_path
from keysafe.relay.link import Delivered, RelayLink, handed_over_in_order
from keysafe.relay.pairing import Claim, ClaimAnswer
from keysafe.service import pairing
from keysafe.vault.vault import Vault

logger = logging.getLogger(__name__)

ANSWERS_KEPT_S: Final = 600.0  # a retried request id gets its first answer for this long
MAX_ANSWERS_KEPT: Final = 2048
MAX_AUDITED_PER_MINUTE: Final = 30  # refused envelopes audited one by one; beyond, counted
_FORWARDED: Final = ("content-type", "accept", "idempotency-key")
# The routes whose request takes an idempotency key (its first result is kept in the database).
IDEMPOTENT_ROUTES: Final = frozenset(
    {
        "/v1/agent/sign-transaction",
        "/v1/agent/send-transaction",
        "/v1/agent/sign-message",
        "/v1/agent/sign-typed-data",
        "/v1/agent/transfer",
    }
)
PLACEHOLDER_PREFIX: Final = "ksp_"  # service/placeholders.py PREFIX
_RETURNED: Final = ("content-type", "retry-after", "location")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def as_agent(app: ASGIApp) -> ASGIApp:
    """`app`, with the relayed agent's name moved from an in-process header into the scope.

    Only this end's in-process client talks to the wrapped app; the server's network-facing app
    is the unwrapped one, where no request can set the scope key.
    """

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if not agent_path(str(scope.get("path", ""))):
                # A relayed request is for the agent API and nothing else (not the owner's
                # login, not the page): whatever a client or a decoder made of its path.
                await _not_found(send)
                return
            headers = [(k, v) for k, v in scope["headers"] if k != b"x-keysafe-relayed-agent"]
            agent = dict(scope["headers"]).get(b"x-keysafe-relayed-agent")
            scope = dict(scope) | {"headers": headers}
            if agent:
                scope[wire.RELAYED_AGENT] = agent.decode()
        await app(scope, receive, send)

    return wrapped


async def _not_found(send: Send) -> None:
    error = NotFoundError(
        "Not an agent API route.", next_step="send an agent API request (/v1/agent/…)."
    )
    body = json_bytes({"error": error.to_dict()})
    await send(
        {
            "type": "http.response.start",
            "status": error.http_status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


@dataclass
class _Answered:
    at: float
    answer: asyncio.Future[dict[str, Any]]
    kind: Kind = Kind.RESPONSE


@dataclass
class VaultEnd:
    """Connects the unlocked vault to a relay and answers its paired sidecars."""

    vault: Vault
    app: ASGIApp
    relay: str
    link_factory: Callable[[str, Identity], RelayLink] = field(
        default=lambda url, me: RelayLink(url, me.sign)
    )
    _freshness: Freshness = field(default_factory=Freshness)
    _answers: dict[tuple[str, str], _Answered] = field(default_factory=dict)
    _audited: list[float] = field(default_factory=list)
    _suppressed: int = 0

    async def run(self) -> None:
        """Wait for the vault to be unlocked (its identity comes from the master key), connect,
        and answer until cancelled."""
        while not self.vault.is_unlocked:
            await asyncio.sleep(0.5)
        me = await asyncio.to_thread(pairing.vault_identity, self.vault)
        link = self.link_factory(self.relay, me)
        sender = Sender(me)
        await link.start()
        logger.info("relay: connected out to %s as %s", self.relay, me.rid[:12])
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=as_agent(self.app)),
            base_url="http://127.0.0.1",
            timeout=httpx.Timeout(120.0),
        )
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                delivered = await link.receive()
                message = await asyncio.to_thread(self._open, me, delivered)
                await link.ack(delivered.id)
                if message is None:
                    continue
                task = asyncio.create_task(self._answer(message, me, link, sender, client))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            for task in tasks:
                task.cancel()
            await client.aclose()
            await link.close()

    # -- receiving ------------------------------------------------------------------------

    def _open(self, me: Identity, delivered: Delivered) -> Message | None:
        def key_of(message: Message) -> bytes | None:
            if message.kind is Kind.CLAIM:
                try:
                    claim = Claim.model_validate(message.payload)
                    keys = claim.sidecar_keys
                except (ValidationError, ValueError):
                    return None
                # Only a claim of an open invite is heard (and gets a place in Freshness).
                return keys.sign if pairing.claim_admissible(self.vault, claim) else None
            if message.kind is Kind.REQUEST:
                bound = pairing.sidecar_binding(self.vault, message.sender)
                return None if bound is None else bound[1].sign
            return None  # the vault takes only claims and requests

        try:
            message = envelope.open_sealed(
                me, delivered.body, sender=delivered.sender, key_of=key_of
            )
            self._freshness.check(message)
        except envelope.EnvelopeRefused as refused:
            self._audit_refused(delivered.sender, refused)
            return None
        return message

    def _audit_refused(self, sender: str, refused: envelope.EnvelopeRefused) -> None:
        now = time.monotonic()
        self._audited = [t for t in self._audited if now - t < 60]
        logger.warning("relay: refused an envelope from %s: %s", sender[:12], refused.reason)
        if len(self._audited) >= MAX_AUDITED_PER_MINUTE:
            self._suppressed += 1  # a flood is counted, and written with the next one audited
            return
        self._audited.append(now)
        details = {"reason": refused.reason, "detail": refused.detail}
        if self._suppressed:
            details["more_refused"] = str(self._suppressed)
            self._suppressed = 0
        with self.vault.db.write() as conn:
            self.vault.audit(
                conn,
                actor=f"relay:{sender[:12]}",
                action="relay.refused",
                target=f"sidecar:{sender[:12]}",
                outcome=Outcome.DENIED,
                details=details,
            )

    # -- answering ------------------------------------------------------------------------

    async def _answer(
        self,
        message: Message,
        me: Identity,
        link: RelayLink,
        sender: Sender,
        client: httpx.AsyncClient,
    ) -> None:
        key = (message.sender, message.id)
        now = time.monotonic()
        for k in [k for k, a in self._answers.items() if now - a.at > ANSWERS_KEPT_S]:
            del self._answers[k]
        while len(self._answers) >= MAX_ANSWERS_KEPT:  # oldest first (dicts keep order)
            # A retry of a forgotten one meets its mark or its idempotency key instead.
            del self._answers[next(iter(self._answers))]
        held = self._answers.get(key)
        if held is None or message.kind is Kind.CLAIM:
            # A claim is asked again while the owner decides: each one reads the state anew.
            held = _Answered(now, asyncio.get_running_loop().create_future())
            self._answers[key] = held
            try:
                kind, payload, to = await self._run(message, client)
            except Exception:
                logger.exception("relay: request %s failed inside the vault", message.id[:8])
                kind, payload, to = Kind.RESPONSE, _error(ErrorCode.INTERNAL), None
            held.kind = kind
            held.answer.set_result({"payload": payload, "to": to})
        done = await held.answer
        to_keys: PeerKeys | None = done["to"]
        if to_keys is None:
            to_keys = await asyncio.to_thread(self._keys_of, message)
        if to_keys is None:
            return  # nobody to answer: an unknown sender gets silence
        reply = sender.message(held.kind, message.sender, message.id, done["payload"])
        try:
            await handed_over_in_order(link, message.sender, envelope.seal(me, to_keys, reply))
        except PayloadTooLargeError:
            # An answer the relay will not carry (a large API response): say so, not silence.
            too_large = _error(
                ErrorCode.PAYLOAD_TOO_LARGE, "The answer is larger than the relay carries."
            )
            reply = sender.message(Kind.RESPONSE, message.sender, message.id, too_large)
            await handed_over_in_order(link, message.sender, envelope.seal(me, to_keys, reply))

    def _keys_of(self, message: Message) -> PeerKeys | None:
        if message.kind is Kind.CLAIM:
            return Claim.model_validate(message.payload).sidecar_keys
        bound = pairing.sidecar_binding(self.vault, message.sender)
        return None if bound is None else bound[1]

    async def _run(
        self, message: Message, client: httpx.AsyncClient
    ) -> tuple[Kind, dict[str, Any], PeerKeys | None]:
        if message.kind is Kind.CLAIM:
            claim = Claim.model_validate(message.payload)
            answer: ClaimAnswer = await asyncio.to_thread(
                pairing.claim, self.vault, claim, message.sender
            )
            return Kind.RESPONSE, answer.model_dump(mode="json"), claim.sidecar_keys
        agent = await asyncio.to_thread(pairing.sidecar_agent, self.vault, message.sender)
        if agent is None:
            # Revoked (or unpaired since): cut off, told so, and audited (at a bounded rate).
            cut_off = envelope.EnvelopeRefused("revoked", "the sidecar's agent is revoked")
            await asyncio.to_thread(self._audit_refused, message.sender, cut_off)
            return (
                Kind.REFUSED,
                _error(
                    ErrorCode.NOT_AUTHENTICATED, "This sidecar's agent was revoked or unpaired."
                ),
                None,
            )
        try:
            request = RelayedRequest.model_validate(message.payload)
            body = base64.b64decode(request.body, validate=True)
        except (ValidationError, ValueError):
            return (
                Kind.RESPONSE,
                _error(ErrorCode.MALFORMED_REQUEST, "Not an agent API request."),
                None,
            )
        headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARDED}
        auth = request.headers.get("authorization", "")
        if auth.startswith(f"Bearer {PLACEHOLDER_PREFIX}"):
            # `keysafe proxy` on the agent's host: the placeholder keeps its narrow rights.
            headers["authorization"] = auth
        headers["x-keysafe-relayed-agent"] = agent[0]
        if request.method != "GET":
            body, once = await self._at_most_once(request, body, agent[0], message)
            if not once:
                restarted = _error(
                    ErrorCode.REQUEST_IN_PROGRESS,
                    "The vault restarted while it ran this request, so it may or may not have "
                    "run; it is not run again.",
                )
                return Kind.RESPONSE, restarted, agent[1]
        built = client.build_request(
            request.method,
            request.path + (f"?{request.query}" if request.query else ""),
            content=body,
            headers=headers,
        )
        if not agent_path(built.url.path):
            return Kind.RESPONSE, _error(ErrorCode.NOT_FOUND, "Not an agent API route."), agent[1]
        response = await client.send(built)
        out = RelayedResponse(
            status=response.status_code,
            headers={k: v for k, v in response.headers.items() if k.lower() in _RETURNED},
            body=base64.b64encode(response.content).decode(),
        )
        return Kind.RESPONSE, out.model_dump(mode="json"), agent[1]

    async def _at_most_once(
        self, request: RelayedRequest, body: bytes, agent: str, message: Message
    ) -> tuple[bytes, bool]:
        """Make a request that changes something run once, across a restart of this process too
        (the in-memory answers cover retries while it runs; a sidecar's retry after a restart
        would otherwise run it again).

        A route that takes an idempotency key gets one made of the sidecar and the request id
        (unless the agent gave its own): the vault's idempotency table then answers a retry with
        the first result. Any other route is marked in the database before it runs; a retry that
        finds the mark and no answer is refused (it may have run), never run twice.
        """
        if request.path in IDEMPOTENT_ROUTES:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                if not parsed.get("idempotency_key"):
                    parsed["idempotency_key"] = f"relay:{message.sender[:16]}:{message.id}"
                return json.dumps(parsed).encode(), True
        first = await asyncio.to_thread(
            pairing.mark_relayed, self.vault, agent, message.sender, message.id
        )
        return body, first


_NEXT: Final[dict[ErrorCode, str]] = {
    ErrorCode.NOT_AUTHENTICATED: "ask the owner to invite this host again "
    "(`keysafe agent invite`).",
    ErrorCode.MALFORMED_REQUEST: "send an agent API request (/v1/agent/…).",
    ErrorCode.INTERNAL: "retry; the owner finds the details in the vault's log.",
    ErrorCode.REQUEST_IN_PROGRESS: "check what it did (list_pending_approvals, the chain), then "
    "ask again as a new request if it is still needed.",
    ErrorCode.NOT_FOUND: "send an agent API request (/v1/agent/…).",
    ErrorCode.PAYLOAD_TOO_LARGE: "ask for less (a range, fewer fields), or run the agent beside "
    "the vault for this call.",
}


def _error(code: ErrorCode, message: str = "The vault could not answer.") -> dict[str, Any]:
    """An error answer the vault end gives itself, with the code's STATUS."""
    body = {"error": {"code": str(code), "message": message, "next": _NEXT.get(code, "retry.")}}
    return RelayedResponse(
        status=STATUS[code][0],
        headers={"content-type": "application/json"},
        body=base64.b64encode(json_bytes(body)).decode(),
    ).model_dump(mode="json")


def json_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()
