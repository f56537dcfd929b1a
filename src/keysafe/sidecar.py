"""The sidecar: the vault's agent API on the agent's own host, reached through a relay.

`keysafe sidecar pair 'ksi_…'` makes the sidecar's keys, claims the invite, shows the four words
and waits for the owner's approval; then it keeps its state in its own home
(relay/sidecar_state.py) and prints, once, a local token (`ks_local_…`).

`keysafe sidecar --port 8420` serves the vault's agent API on 127.0.0.1, path for path: a local
caller presents the local token; the sidecar forwards the request (never the token) in an
envelope to the vault and returns the vault's answer. So `keysafe mcp`, `keysafe proxy`,
`keysafe run` and `keysafe.client` work unchanged with `KEYSAFE_URL=http://127.0.0.1:8420` and
`KEYSAFE_AGENT_TOKEN=ks_local_…`.

A request whose answer is late is sent again with the same request id (sealed anew, so it is
fresh): the vault answers a request id once, so a retry across a relay restart never runs twice.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import uvicorn
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from keysafe import wire
from keysafe.errors import (
    KeysafeError,
    MalformedRequestError,
    NotAuthenticatedError,
    PayloadTooLargeError,
    VaultUnreachableError,
)
from keysafe.relay.envelope import (
    EnvelopeRefused,
    Freshness,
    Identity,
    Kind,
    Message,
    PeerKeys,
    Sender,
    new_id,
    open_sealed,
    seal,
)
from keysafe.relay.forwarded import RelayedRequest, RelayedResponse
from keysafe.relay.link import RelayLink, handed_over_in_order
from keysafe.relay.pairing import (
    Claim,
    ClaimAnswer,
    Invite,
    commitment,
    decode_invite,
    pairing_words,
)
from keysafe.relay.sidecar_state import SidecarState

logger = logging.getLogger(__name__)

RETRY_AFTER_S: Final = 4.0  # a request with no answer yet is sent again after this long
REQUEST_DEADLINE_S: Final = 120.0  # and given up after this long
CLAIM_EVERY_S: Final = 1.0
_FORWARDED: Final = ("content-type", "accept", "idempotency-key")
MAX_BODY: Final = 1024 * 1024  # what the vault takes (wire.MAX_BODY)
# Refusals that sending the same sealed message again cannot change (relay/link_errors.py); a
# rate limit, a full mailbox or a relay that is away are worth the next round.
_FINAL_REFUSALS: Final = (PayloadTooLargeError, MalformedRequestError, NotAuthenticatedError)


@dataclass
class _Channel:
    """One end's conversation with the vault through the relay: seal, send, match answers."""

    me: Identity
    vault: PeerKeys
    link: RelayLink
    sender: Sender = field(init=False)
    freshness: Freshness = field(default_factory=Freshness)
    waiting: dict[str, asyncio.Future[Message]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sender = Sender(self.me)

    async def send(self, kind: Kind, request_id: str, payload: dict[str, Any]) -> None:
        message = self.sender.message(kind, self.vault.rid, request_id, payload)
        await handed_over_in_order(self.link, self.vault.rid, seal(self.me, self.vault, message))

    async def receive_forever(self) -> None:
        while True:
            delivered = await self.link.receive()
            try:
                message = open_sealed(
                    self.me,
                    delivered.body,
                    sender=delivered.sender,
                    key_of=lambda m: self.vault.sign if m.sender == self.vault.rid else None,
                )
                self.freshness.check(message)
            except EnvelopeRefused as refused:
                logger.warning("sidecar: refused an envelope: %s", refused.reason)
                await self.link.ack(delivered.id)
                continue
            await self.link.ack(delivered.id)
            future = self.waiting.get(message.id)
            if future is not None and not future.done():
                future.set_result(message)

    async def ask(
        self,
        kind: Kind,
        payload: dict[str, Any],
        *,
        request_id: str | None = None,
        retry_after: float = RETRY_AFTER_S,
        deadline: float = REQUEST_DEADLINE_S,
    ) -> Message:
        """Send a request and wait for its answer, sending it again (same id) while none comes.

        Raises:
            VaultUnreachableError: no answer before the deadline.
            PayloadTooLargeError: the sealed request is over the relay's --max-body.
            MalformedRequestError: the relay refused the frame.
            NotAuthenticatedError: the relay refused this end's signature (its clock).
        """
        request_id = request_id or new_id()
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self.waiting[request_id] = future
        give_up = time.monotonic() + deadline
        try:
            while True:
                try:
                    await self.send(kind, request_id, payload)
                except _FINAL_REFUSALS:
                    raise  # sent again, it would be refused again: say so now
                except Exception as exc:  # the relay is away: the next round tries again
                    logger.info("sidecar: could not hand the request to the relay (%s)", exc)
                left = give_up - time.monotonic()
                if left <= 0:
                    break
                try:
                    return await asyncio.wait_for(asyncio.shield(future), min(retry_after, left))
                except TimeoutError:
                    continue
        finally:
            self.waiting.pop(request_id, None)
        raise VaultUnreachableError(
            "The vault did not answer through the relay in time.",
            next_step="check that `keysafe serve --relay …` runs and is unlocked, and that the "
            "relay is reachable; then retry.",
        )


async def pair(
    invite_text: str,
    *,
    host_label: str,
    on_words: Callable[[list[str]], None],
    link_factory: Callable[[str, Identity], RelayLink] = lambda url, me: RelayLink(url, me.sign),
) -> tuple[Identity, Invite]:
    """Claim the invite and wait until the owner approves the pairing.

    Raises:
        MalformedRequestError: the invite is not valid, or the owner denied the pairing, or
            it expired, or the vault refused the claim.
    """
    invite = decode_invite(invite_text, now=time.time())
    me = Identity.generate()
    vault = invite.vault_keys
    nonce = secrets.token_bytes(16)
    link = link_factory(invite.relay, me)
    await link.start()
    channel = _Channel(me, vault, link)
    receiver = asyncio.create_task(channel.receive_forever())
    claim = Claim(
        invite=invite,
        sidecar=me.public.to_text(),
        host=host_label[:100],
        commitment=commitment(nonce),
    )
    words: list[str] | None = None
    try:
        while time.time() < invite.expires + 300:  # an approval may take the approval's TTL
            answer = await _claim_once(channel, claim)
            if answer.status == "reveal" and words is None:
                # The vault fixed its nonce before seeing ours: now ours is revealed, and both
                # ends can say the words.
                words = pairing_words(
                    invite, vault, me.public, nonce, bytes.fromhex(answer.nonce or "")
                )
                on_words(words)
                claim = claim.model_copy(update={"reveal": nonce.hex()})
                continue
            if answer.status == "paired":
                return me, invite
            if answer.status not in ("pending", "reveal"):
                raise MalformedRequestError(
                    f"The pairing was not made ({answer.status}): "
                    f"{answer.message or 'the vault refused it'}",
                    next_step="ask the owner for a new invite (`keysafe agent invite NAME`).",
                )
            if answer.words is not None and answer.words != words:
                # The vault saw other keys than ours: someone is in between. The owner will see
                # words that do not match ours; say so here too.
                logger.warning("sidecar: the vault shows other words: someone is in between")
            await asyncio.sleep(CLAIM_EVERY_S)
        raise MalformedRequestError(
            "The owner did not approve the pairing in time.",
            next_step="ask the owner for a new invite.",
        )
    finally:
        receiver.cancel()
        await link.close()


async def _claim_once(channel: _Channel, claim: Claim) -> ClaimAnswer:
    message = await channel.ask(
        Kind.CLAIM, claim.model_dump(mode="json"), retry_after=CLAIM_EVERY_S, deadline=60
    )
    return ClaimAnswer.model_validate(message.payload)


_PLACEHOLDER_ROUTES: Final = ("/v1/agent/http", "/v1/agent/http-request")


def _caller(state: SidecarState, request: Request) -> str | None:
    """Who may call: "local" (the local token), "placeholder" (a `ksp_…` on a credential call,
    for `keysafe proxy`: forwarded for the vault to check), or None."""
    auth = request.headers.get("authorization", "")
    if not auth.lower().startswith("bearer "):
        return None
    bearer = auth[7:].strip()
    if bearer.startswith("ksp_") and request.url.path in _PLACEHOLDER_ROUTES:
        return "placeholder"
    got = hashlib.sha256(bearer.encode()).hexdigest()
    return "local" if hmac.compare_digest(got, state.local_token_sha256) else None


def _refused(exc: KeysafeError) -> JSONResponse:
    """The sidecar's own refusal, with its STATUS code (the vault's answers pass through)."""
    return JSONResponse({"error": exc.to_dict()}, status_code=exc.http_status)


def _too_large() -> JSONResponse:
    return _refused(
        PayloadTooLargeError("The request body is too large.", next_step="send at most 1 MiB.")
    )


async def _capped_body(request: Request) -> bytearray | None:
    """The request's body, or None when it declares or turns out more than MAX_BODY."""
    declared = request.headers.get("content-length", "")
    if declared and (not declared.isdigit() or int(declared) > MAX_BODY):
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return None
    return body


def _to_relay(request: Request, caller: str, body: bytearray) -> RelayedRequest:
    """The local request as the vault gets it: the forwarded headers only (a placeholder
    caller's bearer too, for the vault to check), never the local token.

    Raises:
        ValidationError: not an agent API request.
    """
    return RelayedRequest(
        method=request.method,
        path=request.url.path,
        query=request.url.query,
        headers={
            k: v
            for k, v in request.headers.items()
            if k.lower() in _FORWARDED or (caller == "placeholder" and k.lower() == "authorization")
        },
        body=base64.b64encode(body).decode(),
    )


def _from_vault(answer: Message) -> Response:
    """The vault's answer to a forwarded request, passed through as it came."""
    if answer.kind is Kind.REFUSED:
        logger.warning("sidecar: the vault refused this sidecar (its agent was revoked)")
    try:
        out = RelayedResponse.model_validate(answer.payload)
        content = base64.b64decode(out.body, validate=True)
    except (ValidationError, ValueError):
        return _refused(
            VaultUnreachableError("The vault's answer did not read.", next_step="retry.")
        )
    return Response(content, status_code=out.status, headers=out.headers)


def local_app(state: SidecarState, channel: _Channel) -> Starlette:
    """The agent API on the agent's host: every /v1/agent/ path, forwarded to the vault."""

    async def forward(request: Request) -> Response:
        caller = _caller(state, request)
        if caller is None:
            return _refused(
                NotAuthenticatedError(
                    "This sidecar needs its local token.",
                    next_step="send `Authorization: Bearer ks_local_…` (printed by `keysafe "
                    "sidecar pair`).",
                )
            )
        body = await _capped_body(request)
        if body is None:
            return _too_large()
        try:
            relayed = _to_relay(request, caller, body)
        except ValidationError:
            return _refused(
                MalformedRequestError("Not an agent API request.", next_step="check the path.")
            )
        try:
            answer = await channel.ask(Kind.REQUEST, relayed.model_dump(mode="json"))
        except KeysafeError as exc:  # unreachable, or one of _FINAL_REFUSALS
            return _refused(exc)
        return _from_vault(answer)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "sidecar": True, "relay": channel.link.connected})

    return Starlette(
        routes=[
            Route("/v1/health", health, methods=["GET"]),
            Route(
                "/v1/agent/{rest:path}", forward, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]
            ),
        ],
        exception_handlers=dict(wire.EXCEPTION_HANDLERS),
    )


async def serve(
    state: SidecarState,
    identity: Identity,
    *,
    host: str,
    port: int,
    link_factory: Callable[[str, Identity], RelayLink] = lambda url, me: RelayLink(url, me.sign),
    ready: Callable[[], None] | None = None,
) -> None:
    """Serve the local agent API until cancelled."""
    link = link_factory(state.relay, identity)
    await link.start()
    channel = _Channel(identity, PeerKeys.from_text(state.vault), link)
    receiver = asyncio.create_task(channel.receive_forever())
    server = uvicorn.Server(
        uvicorn.Config(local_app(state, channel), host=host, port=port, log_level="warning")
    )
    if ready is not None:
        ready()
    try:
        await server.serve()
    finally:
        receiver.cancel()
        await link.close()


__all__ = ["local_app", "pair", "serve"]
