"""Webhooks against a real receiver: every delivery verifies with the recipe in
docs/notifications.md, tampered and stale ones fail it, failures are retried under one delivery
id and end as dead letters, and a kill -9 mid-send loses and duplicates nothing (the receiver
counts deliveries by id)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import Cli
from tests.e2e.notify_fixture import notify_vault
from tests.e2e.server_fixture import (
    MILLI_ETH,
    R1,
    R2,
    R4,
    agent_headers,
    cli_env,
    evm_tx,
    keysafe_server,
)
from tests.support.webhook_receiver import WebhookReceiver

CANARY = "CANARY-webhook-words-8e2b"
SECRET_RE = re.compile(r"whsec_[A-Za-z0-9_-]+")


@dataclass
class Setup:
    home: Path
    token: str
    hooks: WebhookReceiver
    root: Path

    def cli(self) -> Cli:
        return Cli(self.home, cli_env(self.home))

    def add(self, path: str, events: str) -> None:
        out = self.cli().ok("notify", "webhook", "add", self.hooks.url + path, "--events", events)
        found = SECRET_RE.search(out.stdout)
        assert found is not None, out.stdout
        self.hooks.secrets[path] = found.group(0)


@pytest.fixture
def setup(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    home, token = notify_vault(tmp_path_factory, tmp_path)
    with WebhookReceiver() as hooks:
        yield Setup(home, token, hooks, tmp_path)


def _request(url: str, token: str, value: int, to: str) -> httpx.Response:
    body = {
        "wallet": "main",
        "transaction": evm_tx(value, to=to),
        "description": f"{CANARY} to {to}",
    }
    return httpx.post(
        f"{url}/v1/agent/sign-transaction", json=body, headers=agent_headers(token), timeout=30
    )


def test_attack_deliveries_are_signed_private_retried_and_dead_lettered(setup: Setup) -> None:
    setup.add("/ok", "approval,deny,anomaly,pause_all")
    setup.add("/flaky", "pause_all")
    setup.add("/down", "pause_all")
    with keysafe_server(cli_env(setup.home), "--unlock", log_dir=setup.root) as server:
        parked = _request(server.url, setup.token, 6 * MILLI_ETH, R1)
        assert parked.status_code == 202, parked.text
        approval = setup.hooks.wait_event("/ok", "approval")
        for _ in range(5):  # the fifth denial within a minute is an anomaly
            assert _request(server.url, setup.token, MILLI_ETH, R2).status_code == 403
        setup.hooks.wait_event("/ok", "deny", count=5)
        anomaly = setup.hooks.wait_event("/ok", "anomaly")
        server.cli().ok("pause-all")
        dead_after = time.monotonic()
        setup.hooks.wait_event("/ok", "pause_all")
        setup.hooks.wait_for(lambda: len(setup.hooks.on("/flaky")) >= 3, timeout=40)
        setup.hooks.wait_for(lambda: len(setup.hooks.on("/down")) >= 3, timeout=40)
        audit = ""
        while time.monotonic() - dead_after < 40 and "notify.dead_letter" not in audit:
            time.sleep(0.5)
            audit = setup.cli().ok("audit", "--json").stdout
        assert "notify.dead_letter" in audit
    # Every delivery verified with the docs' recipe; what it says is the notice, nothing private.
    everything = setup.hooks.deliveries
    assert everything and all(d.verified for d in everything), [d.path for d in everything]
    body = approval.json()
    assert body["notice"]["category"] == "payment"
    assert body["notice"]["summary"].startswith("send 0.006 ETH to 0x1111…1111")
    assert body["delivery_id"] == approval.delivery_id
    assert "denied 5 times" in anomaly.json()["notice"]["summary"]
    # An attacker's edit or a replay later than five minutes fails the same recipe.
    verify, raw, sig = setup.hooks.verify, approval.body, approval.signature
    assert not verify("/ok", raw.replace(b"0.006", b"0.600"), sig)
    assert not verify("/ok", raw, sig.replace("v1=", "v1=0"))
    assert not verify("/ok", raw, "")
    t = int(sig.split(",")[0].removeprefix("t="))
    assert verify("/ok", raw, sig, now=t + 299)
    assert not verify("/ok", raw, sig, now=t + 301)  # stale: over 5 minutes
    sent = b"".join(d.body for d in everything).decode()
    for private in (CANARY, R1, R2, R4, setup.token, *setup.hooks.secrets.values()):
        assert private not in sent
    # Retries keep their delivery id: /flaky got one delivery three times, the last one taken.
    assert list(setup.hooks.ids("/flaky").values()) == [3]
    assert list(setup.hooks.ids("/down").values()) == [3]
    assert len(setup.hooks.ids("/ok")) == len(setup.hooks.on("/ok"))  # no duplicate on /ok


def test_kill_9_mid_send_delivers_exactly_once_by_delivery_id(setup: Setup) -> None:
    setup.add("/hold", "deny,pause_all")
    env = cli_env(setup.home)
    with keysafe_server(env, "--unlock", log_dir=setup.root) as server:
        assert _request(server.url, setup.token, MILLI_ETH, R2).status_code == 403
        first = setup.hooks.wait_event("/hold", "deny")  # received, and held: never answered
        server.proc.kill()  # kill -9 while the send is in flight
        server.proc.wait(timeout=10)
    setup.hooks.release()
    setup.cli().ok("pause-all")  # queued while no server runs
    with keysafe_server(env, "--unlock", log_dir=setup.root):
        again = setup.hooks.wait_event("/hold", "deny", count=2)
        setup.hooks.wait_event("/hold", "pause_all")
        time.sleep(2)  # time for any wrong extra send to show
    assert again.delivery_id == first.delivery_id and again.body == first.body
    counts = setup.hooks.ids("/hold")
    assert len(counts) == 2  # two notifications, each delivered under one id
    assert counts[first.delivery_id] == 2  # the cut send, and its one retry after the restart
    assert sorted(counts.values()) == [1, 2]


def test_cli_refuses_a_webhook_in_clear_and_explains_itself(setup: Setup) -> None:
    cli = setup.cli()
    refused = cli("notify", "webhook", "add", "http://hooks.example/ks")
    assert refused.exit_code == 1
    assert "in clear" in refused.stderr and "https://" in refused.stderr
    unknown = cli("notify", "webhook", "add", "https://hooks.example/ks", "--events", "boom")
    assert unknown.exit_code == 1 and "approval, deny, anomaly" in unknown.stderr
    assert "No channels" in cli.ok("notify", "list").stdout
    helped = cli.ok("notify", "--help").stdout
    assert "never keys, tokens" in helped and "webhook" in helped and "telegram" in helped
    assert "NOT_FOUND" in cli("notify", "test").stderr  # nothing to test yet
