"""The relay's wire format (protocol v1): routing ids, signed hellos and requests, and frames.

A routing id names an endpoint: the first 16 bytes of SHA-256 of its Ed25519 public key, in hex.
The relay learns nothing else about an endpoint, and routes bodies it cannot read.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from typing import Annotated, Final, Literal

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

WS_PATH: Final = "/v1/relay/ws"
SEND_PATH: Final = "/v1/relay/send"
POLL_PATH: Final = "/v1/relay/poll"
ACK_PATH: Final = "/v1/relay/ack"
HEALTH_PATH: Final = "/v1/relay/health"

HELLO_CONTEXT: Final = b"keysafe-relay-hello-v1\n"
HTTP_CONTEXT: Final = b"keysafe-relay-http-v1\n"
AUTH_HEADER: Final = "x-keysafe-relay-auth"
HTTP_CLOCK_SKEW_S: Final = 60.0  # a signed request older or newer than this is refused
MAX_POLL_WAIT_S: Final = 25.0  # under the 30 s most proxies allow an idle request

CLOSE_BAD_HELLO: Final = 4401  # the hello's signature (or shape) is wrong
CLOSE_REPLACED: Final = 4409  # a newer connection of the same routing id took over

DEFAULT_MAX_BODY: Final = 256 * 1024
DEFAULT_TTL_S: Final = 300.0
DEFAULT_RATE: Final = 100.0
DEFAULT_BURST: Final = 200.0
DEFAULT_MAILBOX_CAP: Final = 1000


_HEX32 = r"^[0-9a-f]{32}$"
Rid = Annotated[str, Field(pattern=_HEX32)]
MsgId = Annotated[str, Field(pattern=_HEX32)]
# Base64 text; its decoded size is checked by the relay against its own cap.
B64 = Annotated[str, Field(max_length=64 * 1024 * 1024)]


def routing_id(verify_key_bytes: bytes) -> str:
    """The routing id of an Ed25519 public key: hex of SHA-256(pub)[:16], 32 characters."""
    return hashlib.sha256(verify_key_bytes).digest()[:16].hex()


def hello_signature(key: SigningKey, nonce_hex: str) -> str:
    """The hex signature a client answers the relay's challenge with."""
    return key.sign(HELLO_CONTEXT + bytes.fromhex(nonce_hex)).signature.hex()


def verify_hello(pub_hex: str, sig_hex: str, nonce: bytes) -> str | None:
    """The routing id of `pub_hex` if `sig_hex` signs this connection's `nonce`, else None."""
    try:
        pub = bytes.fromhex(pub_hex)
        VerifyKey(pub).verify(HELLO_CONTEXT + nonce, bytes.fromhex(sig_hex))
    except (ValueError, TypeError, BadSignatureError):  # nacl raises ValueError on bad lengths
        return None
    return routing_id(pub)


def _http_message(method: str, path: str, ts: str, body: bytes) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    return HTTP_CONTEXT + f"{method.upper()}\n{path}\n{ts}\n{digest}".encode()


def http_auth(
    key: SigningKey, method: str, path: str, body: bytes, *, now_ms: int | None = None
) -> str:
    """The `x-keysafe-relay-auth` header for one long-poll request:
    `<pub hex>.<unix ms>.<sig hex>`."""
    ts = str(int(time.time() * 1000) if now_ms is None else now_ms)
    sig = key.sign(_http_message(method, path, ts, body)).signature.hex()
    return f"{key.verify_key.encode().hex()}.{ts}.{sig}"


def verify_http_auth(
    header: str, method: str, path: str, body: bytes, *, now: float | None = None
) -> str | None:
    """The routing id behind a signed request, or None if the header is malformed, more than
    HTTP_CLOCK_SKEW_S away from this clock, or badly signed. A replay inside that window can only
    repeat an idempotent send, an ack or a poll of the sender's own mailbox (TLS in front of the
    relay keeps anyone else from seeing a header to replay)."""
    parts = header.split(".")
    if len(parts) != 3 or not parts[1].isdigit() or len(parts[1]) > 16:
        return None
    pub_hex, ts, sig_hex = parts
    clock = time.time() if now is None else now
    if abs(clock - int(ts) / 1000) > HTTP_CLOCK_SKEW_S:
        return None
    try:
        pub = bytes.fromhex(pub_hex)
        VerifyKey(pub).verify(_http_message(method, path, ts, body), bytes.fromhex(sig_hex))
    except (ValueError, TypeError, BadSignatureError):
        return None
    return routing_id(pub)


def decode_body(text: str) -> bytes | None:
    """The bytes of a base64 body, or None if it is not strict base64."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def encode_body(body: bytes) -> str:
    return base64.b64encode(body).decode("ascii")


class _Frame(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# Relay → client.
class Challenge(_Frame):
    type: Literal["challenge"] = "challenge"
    nonce: str = Field(pattern=r"^[0-9a-f]{64}$")


class Ready(_Frame):
    type: Literal["ready"] = "ready"
    rid: Rid
    max_body: int | None = None  # the relay's cap, so a link refuses a larger body itself


class Sent(_Frame):
    type: Literal["sent"] = "sent"
    id: MsgId


class ErrorFrame(_Frame):
    type: Literal["error"] = "error"
    id: str | None = None
    code: str
    retry_after: float | None = None


class Msg(_Frame):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    type: Literal["msg"] = "msg"
    sender: Rid = Field(alias="from")
    id: MsgId
    body: B64


# Client → relay.
class Hello(_Frame):
    type: Literal["hello"] = "hello"
    pub: str = Field(pattern=r"^[0-9a-f]{64}$")
    sig: str = Field(pattern=r"^[0-9a-f]{128}$")


class Send(_Frame):
    type: Literal["send"] = "send"
    to: Rid
    id: MsgId
    body: B64


class Ack(_Frame):
    type: Literal["ack"] = "ack"
    id: MsgId


ClientFrame = Annotated[Hello | Send | Ack, Field(discriminator="type")]
RelayFrame = Annotated[Challenge | Ready | Sent | ErrorFrame | Msg, Field(discriminator="type")]
_CLIENT: TypeAdapter[Hello | Send | Ack] = TypeAdapter(ClientFrame)
_RELAY: TypeAdapter[Challenge | Ready | Sent | ErrorFrame | Msg] = TypeAdapter(RelayFrame)


def parse_client_frame(text: str | bytes) -> Hello | Send | Ack | None:
    """A client's frame, or None if it is not one. The error is dropped on purpose: pydantic's
    message quotes the input, and the input may hold a body."""
    try:
        return _CLIENT.validate_json(text)
    except ValidationError:
        return None


def parse_relay_frame(text: str | bytes) -> Challenge | Ready | Sent | ErrorFrame | Msg | None:
    """A relay's frame, or None if it is not one (see parse_client_frame)."""
    try:
        return _RELAY.validate_json(text)
    except ValidationError:
        return None


def dump(frame: _Frame) -> str:
    """A frame as the JSON text sent on the wire (field aliases, such as `from`, applied)."""
    return frame.model_dump_json(by_alias=True)


# The long-poll API's request bodies.
class SendRequest(_Frame):
    to: Rid
    id: MsgId
    body: B64


class PollRequest(_Frame):
    wait: float = Field(default=0.0, ge=0.0, le=MAX_POLL_WAIT_S)
    # Ids the client already holds (delivered, not yet acked): left out of the answer, so a poll
    # waits for something new instead of answering at once with what the client has. An
    # extension of v1; a client that leaves it out gets every pending message.
    skip: list[MsgId] = Field(default_factory=list, max_length=2000)


class AckRequest(_Frame):
    ids: list[MsgId] = Field(max_length=2000)
