"""The wire format: routing ids, the hello's signature and the long-poll API's signed header."""

from __future__ import annotations

import hashlib
import secrets
import time

from nacl.signing import SigningKey

from keysafe.relay import routing as r


def test_routing_id_is_the_first_16_bytes_of_sha256_of_the_public_key_in_hex() -> None:
    pub = bytes(range(32))
    rid = r.routing_id(pub)
    assert rid == hashlib.sha256(pub).hexdigest()[:32]
    assert len(rid) == 32 and rid == rid.lower()


def test_a_hello_verifies_only_for_its_own_nonce_and_key() -> None:
    key, other = SigningKey.generate(), SigningKey.generate()
    nonce = secrets.token_bytes(32)
    pub = key.verify_key.encode().hex()
    sig = r.hello_signature(key, nonce.hex())
    assert r.verify_hello(pub, sig, nonce) == r.routing_id(key.verify_key.encode())
    assert r.verify_hello(pub, sig, secrets.token_bytes(32)) is None  # another connection's
    assert r.verify_hello(other.verify_key.encode().hex(), sig, nonce) is None  # claims another key
    assert r.verify_hello(pub, "00" * 64, nonce) is None
    assert r.verify_hello("zz", sig, nonce) is None


def test_the_http_header_binds_method_path_body_and_time() -> None:
    key = SigningKey.generate()
    rid = r.routing_id(key.verify_key.encode())
    body = b'{"wait": 0}'
    header = r.http_auth(key, "POST", r.POLL_PATH, body)
    assert r.verify_http_auth(header, "POST", r.POLL_PATH, body) == rid
    assert r.verify_http_auth(header, "POST", r.POLL_PATH, b'{"wait": 1}') is None
    assert r.verify_http_auth(header, "POST", r.ACK_PATH, body) is None
    assert r.verify_http_auth(header, "GET", r.POLL_PATH, body) is None
    # More than 60 s from the relay's clock, either way.
    old = r.http_auth(key, "POST", r.POLL_PATH, body, now_ms=int((time.time() - 61) * 1000))
    assert r.verify_http_auth(old, "POST", r.POLL_PATH, body) is None
    ahead = r.http_auth(key, "POST", r.POLL_PATH, body, now_ms=int((time.time() + 61) * 1000))
    assert r.verify_http_auth(ahead, "POST", r.POLL_PATH, body) is None
    near = r.http_auth(key, "POST", r.POLL_PATH, body, now_ms=int((time.time() - 30) * 1000))
    assert r.verify_http_auth(near, "POST", r.POLL_PATH, body) == rid
    # Someone else's public key in front of this key's signature.
    pub, ts, sig = header.split(".")
    other = SigningKey.generate().verify_key.encode().hex()
    assert r.verify_http_auth(f"{other}.{ts}.{sig}", "POST", r.POLL_PATH, body) is None
    for broken in ("", "a.b", f"{pub}.x.{sig}", f"{pub}.{ts}.{sig}.x"):
        assert r.verify_http_auth(broken, "POST", r.POLL_PATH, body) is None


def test_frames_parse_and_a_bad_one_is_none_without_quoting_it() -> None:
    send = r.parse_client_frame(
        '{"type":"send","to":"' + "a" * 32 + '","id":"' + "b" * 32 + '","body":"aGk="}'
    )
    assert isinstance(send, r.Send) and send.body == "aGk="
    assert r.parse_client_frame('{"type":"send","to":"short","id":"x","body":""}') is None
    assert r.parse_client_frame(b"\xff not json") is None
    msg = r.Msg.model_validate({"from": "c" * 32, "id": "d" * 32, "body": "aGk="})
    assert '"from":"' + "c" * 32 in r.dump(msg)
    assert r.parse_relay_frame(r.dump(msg)) == msg
    assert r.decode_body("not base64!") is None and r.decode_body("aGk=") == b"hi"
