"""SecretBytes never shows its value, refuses pickling, and wipes."""

from __future__ import annotations

import copy
import hmac
import logging
import pickle
import traceback

import pytest

from keysafe.crypto.secret import SecretBytes, wiped

CANARY = b"CANARY-7f3a9c-do-not-leak"


def _leaks(text: str) -> bool:
    return any(
        form in text
        for form in (CANARY.decode(), CANARY.hex(), repr(CANARY), repr(bytearray(CANARY)))
    )


def test_canary_detector_detects() -> None:
    assert _leaks(f"x{CANARY!r}x")
    assert _leaks(CANARY.hex())


def test_repr_str_format_fstring_never_show_value() -> None:
    s = SecretBytes(CANARY)
    renderings = [
        repr(s),
        str(s),
        format(s),
        format(s, ">80"),
        format(s, "x"),
        f"{s}",
        f"{s!r}",
        f"{s!s}",
        f"{s:^60}",
        "%s %r" % (s, s),  # noqa: UP031 - old-style formatting is exactly what is tested
        "{} {!r}".format(s, s),  # noqa: UP032
        str([s]),
        str({"key": s}),
        repr((s,)),
    ]
    for text in renderings:
        assert not _leaks(text), text
    assert "redacted" in repr(s)


def test_value_not_in_logs_or_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    s = SecretBytes(CANARY)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("keysafe.test").info("secret is %s / %r", s, s)
    assert caplog.text and not _leaks(caplog.text)
    try:
        raise RuntimeError(f"failed with {s}")
    except RuntimeError:
        assert not _leaks(traceback.format_exc())


def test_no_instance_dict() -> None:
    s = SecretBytes(CANARY)
    assert not hasattr(s, "__dict__")


def test_reveal_returns_value() -> None:
    s = SecretBytes(CANARY)
    assert s.reveal() == CANARY
    assert len(s) == len(CANARY)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickling_refused(protocol: int) -> None:
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(SecretBytes(CANARY), protocol=protocol)


def test_copying_refused() -> None:
    # copy uses the pickle protocol, so a stray copy.copy() cannot duplicate the secret either
    with pytest.raises(TypeError):
        copy.copy(SecretBytes(CANARY))
    with pytest.raises(TypeError):
        copy.deepcopy(SecretBytes(CANARY))


def test_wipe_zeroes_in_place() -> None:
    s = SecretBytes(CANARY)
    buf = s.reveal()
    s.wipe()
    assert buf is s.reveal()
    assert buf == bytes(len(CANARY))
    assert len(s) == len(CANARY)


def test_constructor_copies_bytes_and_zeroes_source_bytearray() -> None:
    source = bytearray(CANARY)
    s = SecretBytes(source)
    assert source == bytes(len(CANARY))  # the caller's copy is wiped
    assert s.reveal() == CANARY
    s.wipe()
    assert s.reveal() == bytes(len(CANARY))


def test_adopt_takes_ownership_without_copy() -> None:
    buf = bytearray(CANARY)
    s = SecretBytes.adopt(buf)
    assert s.reveal() is buf
    s.wipe()
    assert buf == bytes(len(CANARY))


def test_context_manager_wipes_on_exit() -> None:
    with SecretBytes(CANARY) as s:
        buf = s.reveal()
        assert buf == CANARY
    assert buf == bytes(len(CANARY))


def test_context_manager_wipes_on_exception() -> None:
    s = SecretBytes(CANARY)
    buf = s.reveal()
    with pytest.raises(RuntimeError, match="boom"), s:
        raise RuntimeError("boom")
    assert buf == bytes(len(CANARY))


def test_wiped_helper_zeroes_on_exception() -> None:
    buf = bytearray(CANARY)
    with pytest.raises(RuntimeError), wiped(buf) as inner:
        assert inner is buf
        raise RuntimeError
    assert buf == bytes(len(CANARY))


def test_equality() -> None:
    a, b = SecretBytes(CANARY), SecretBytes(CANARY)
    assert a == b
    assert (a != b) is False
    assert a != SecretBytes(CANARY[:-1] + b"X")
    assert a != SecretBytes(CANARY[:-1])  # different length
    assert a != SecretBytes(b"")
    # never equal to a plain bytes value: comparing a secret to raw bytes is not supported
    assert a != CANARY
    assert CANARY != a  # noqa: SIM300 - the reflected comparison is the point


def test_equality_uses_constant_time_compare(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(x: bytes, y: bytes) -> bool:
        calls.append((x, y))
        return real(x, y)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert SecretBytes(CANARY) == SecretBytes(CANARY)
    assert SecretBytes(CANARY) != SecretBytes(b"other")
    assert len(calls) == 2


def test_unhashable() -> None:
    with pytest.raises(TypeError):
        hash(SecretBytes(CANARY))
