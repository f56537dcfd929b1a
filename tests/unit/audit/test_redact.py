"""Audit redaction: allow-listed keys stay readable, everything else becomes a keyed HMAC."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import Any

import pytest

from keysafe.audit.outcome import Outcome
from keysafe.audit.redact import PLAINTEXT_KEYS, hmac_value, redact
from keysafe.crypto import jcs
from keysafe.errors import AuditWriteError

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
CANARY = "CANARY-audit-9d2e-sk_live_do_not_leak"
HMAC_RE = re.compile(r"^hmac-sha256:[0-9a-f]{64}$")
DESIGN_ALLOW_LIST = ("agent", "rule", "chain", "amount", "recipient")


@pytest.mark.parametrize("key", DESIGN_ALLOW_LIST)
def test_plaintext_keys_include_design_allow_list(key: str) -> None:
    assert key in PLAINTEXT_KEYS


@pytest.mark.parametrize("key", sorted(PLAINTEXT_KEYS))
def test_redact_allow_listed_key_stays_plaintext(key: str) -> None:
    assert redact({key: "value-1"}, KEY) == {key: "value-1"}


@pytest.mark.parametrize(
    "value",
    ["ghp_token", 12345, ["a", "b"], {"nested": "x"}, None, True],
    ids=["str", "int", "list", "dict", "null", "bool"],
)
def test_redact_other_key_becomes_hmac(value: Any) -> None:
    out = redact({"secret_thing": value}, KEY)
    assert HMAC_RE.match(out["secret_thing"])


def test_redact_hmac_is_sha256_hmac_of_canonical_json() -> None:
    out = redact({"file": "/tmp/backup.ksb"}, KEY)
    expected = hmac.new(KEY, jcs.dumps("/tmp/backup.ksb"), hashlib.sha256).hexdigest()
    assert out["file"] == f"hmac-sha256:{expected}"


def test_redact_same_value_same_key_gives_same_hmac() -> None:
    a = redact({"token": "abc"}, KEY)
    b = redact({"other_field": "abc"}, bytearray(KEY))
    assert a["token"] == b["other_field"] == hmac_value(KEY, "abc")


def test_redact_same_value_different_key_gives_different_hmac() -> None:
    assert redact({"token": "abc"}, KEY) != redact({"token": "abc"}, OTHER_KEY)


def test_redact_different_values_give_different_hmacs() -> None:
    assert redact({"token": "abc"}, KEY)["token"] != redact({"token": "abd"}, KEY)["token"]


def test_redact_keeps_every_key_and_its_order() -> None:
    details = {"name": "github", "token": "x", "agent": "bot", "file": "y"}
    assert list(redact(details, KEY)) == list(details)


def test_redact_no_key_with_other_key_raises_audit_write_error() -> None:
    with pytest.raises(AuditWriteError, match="needs the audit key") as info:
        redact({"name": "github", "token": CANARY}, None)
    assert info.value.code == "AUDIT_FAILED"
    assert CANARY not in str(info.value)
    assert CANARY not in json.dumps(info.value.to_dict())


def test_redact_no_key_only_allow_listed_keys_passes() -> None:
    details = {"reason": "wrong passphrase", "failures": 3, "blocked_seconds": 0}
    assert redact(details, None) == details


def test_redact_empty_details_gives_empty_dict() -> None:
    assert redact({}, None) == {}


def test_redact_canary_in_non_allow_listed_values_never_appears() -> None:
    details = {
        "password": CANARY,
        "note": f"the key is {CANARY} ok",
        "headers": {"Authorization": f"Bearer {CANARY}"},
        "list": [CANARY, CANARY.encode().hex()],
        "name": "github",
    }
    out = redact(details, KEY)
    text = json.dumps(out) + jcs.dumps(out).decode() + repr(out)
    for form in (CANARY, CANARY.encode().hex(), CANARY.lower(), CANARY[8:]):
        assert form not in text
    assert out["name"] == "github"


def test_redact_enum_member_kept_as_its_plain_string() -> None:
    """A reason code or outcome enters a row as the exact str it always was (canonical JSON
    takes its fast path on exact types only)."""
    out = redact({"code": Outcome.SUCCESS}, None)
    assert type(out["code"]) is str and out["code"] == "success"
