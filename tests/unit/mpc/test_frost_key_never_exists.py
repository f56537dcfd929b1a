"""Acceptance 5 of the 2-of-3 wallets: the wallet's private key never exists anywhere.

One whole life of a wallet runs in this process with keysafe's own code: the three-party DKG,
ten signings by every pair (session.Signer with a FileNonceStore each, session.Coordinator, every
message through its wire form), a reshare by user + recovery, and the share files keysafe writes.
Everything that leaves a party is captured: every message's bytes, every file written (nonce
stores snapshotted while nonces are on disk, share files, tombstones), every log line and error
text. The group secret is computed here only, from outside the protocol (Σ a_i0 read back from
the parties' own random streams exactly as `dkg.random_scalar` reads them), and must appear in
none of it; no single message or file may hold two parties' signing shares in plaintext either.
A negative control proves the scanner finds the secret when it is there.
"""

from __future__ import annotations

import base64
import logging
import random
from collections.abc import Iterable
from pathlib import Path

import pytest
from nacl.signing import VerifyKey

from keysafe.mpc import share_file
from keysafe.mpc.frost import dkg
from keysafe.mpc.frost.errors import FrostError
from keysafe.mpc.frost.groups import ED25519
from keysafe.mpc.frost.keys import AGENT, PARTIES, RECOVERY, USER, KeyPackage
from keysafe.mpc.frost.session import (
    Coordinator,
    FileNonceStore,
    SignatureShare,
    Signer,
    SignRequest,
)
from keysafe.mpc.share_file import SecretBytes
from keysafe.testing import CHEAP_KDF
from tests.unit.mpc.test_frost_dkg import run_dkg, run_reshare

SUITE = ED25519
PAIRS = [(AGENT, USER), (AGENT, RECOVERY), (USER, RECOVERY)]


def party_seed(i: int) -> str:
    return f"frost-key-never-exists/party-{i}"


def party_rng(i: int) -> dkg.Rng:
    """Each party's own deterministic random stream (only this test knows the seeds)."""
    return random.Random(party_seed(i)).randbytes


def a_i0_from_outside(i: int) -> int:
    """Party i's constant term, re-read from its random stream as `dkg.random_scalar` reads it:
    64 bytes, big-endian, reduced mod the order, redrawn if zero. The first draw of part1."""
    stream = random.Random(party_seed(i)).randbytes
    while True:
        k = int.from_bytes(stream(64), "big") % SUITE.order
        if k:
            return k


def scalar_forms(s: int) -> dict[str, bytes]:
    """Every spelling of a scalar the scan looks for."""
    le, be = s.to_bytes(32, "little"), s.to_bytes(32, "big")
    return {
        "le": le,
        "be": be,
        "le-hex": le.hex().encode(),
        "be-hex": be.hex().encode(),
        "le-HEX": le.hex().upper().encode(),
        "be-HEX": be.hex().upper().encode(),
        "le-b64": base64.b64encode(le),
        "be-b64": base64.b64encode(be),
        "decimal": str(s).encode(),
    }


def found(secret: int, haystack: Iterable[tuple[str, bytes]]) -> list[str]:
    """Where (and in which form) `secret` shows up in the haystack."""
    forms = scalar_forms(secret)
    return [
        f"{where}: {name}" for where, data in haystack for name, f in forms.items() if f in data
    ]


def shares_together(
    shares: dict[int, int], haystack: Iterable[tuple[str, bytes]]
) -> list[tuple[str, list[int]]]:
    """Items of the haystack that hold two or more of these parties' shares."""
    out = []
    for where, data in haystack:
        present = [i for i, s in shares.items() if any(f in data for f in scalar_forms(s).values())]
        if len(present) >= 2:
            out.append((where, present))
    return out


class RecordingEndpoint:
    """A signer reached through bytes only; records every message both ways and snapshots
    every file under `root` after each round (so nonces are seen while they are on disk)."""

    def __init__(self, signer: Signer, root: Path, sink: list[tuple[str, bytes]]) -> None:
        self.signer, self.root, self.sink = signer, root, sink
        self.tamper_round2 = False

    def _snapshot(self, label: str) -> None:
        for path in sorted(self.root.rglob("*")):
            if path.is_file():
                self.sink.append(
                    (f"file {path.relative_to(self.root)} ({label})", path.read_bytes())
                )

    def handle_round1(self, data: bytes) -> bytes:
        self.sink.append(("SignRequest", data))
        out = self.signer.handle_round1(data)
        self.sink.append((f"Commitments from {self.signer.identifier}", out))
        self._snapshot("after round 1")
        return out

    def handle_round2(self, data: bytes) -> bytes:
        self.sink.append(("SigningPackage", data))
        out = self.signer.handle_round2(data)
        if self.tamper_round2:
            msg = SignatureShare.from_bytes(out, SUITE, sender=self.signer.identifier)
            z = (SUITE.deserialize_scalar(msg.share) + 1) % SUITE.order
            out = SignatureShare(
                session_id=msg.session_id, sender=msg.sender, share=SUITE.serialize_scalar(z)
            ).to_bytes()
        self.sink.append((f"SignatureShare from {self.signer.identifier}", out))
        self._snapshot("after round 2")
        return out


def approve(request: SignRequest) -> bool:
    return True


def sign_pair(
    keys: dict[int, KeyPackage],
    pair: tuple[int, int],
    message: bytes,
    root: Path,
    generation: str,
    sink: list[tuple[str, bytes]],
) -> bytes:
    endpoints = {
        i: RecordingEndpoint(
            Signer(
                keys[i], FileNonceStore(root / f"nonces-{generation}-{i}"), check_message=approve
            ),
            root,
            sink,
        )
        for i in pair
    }
    public = keys[pair[0]].public
    sig = Coordinator(public, pair, message).run(endpoints)
    VerifyKey(public.group_public_key).verify(message, sig)  # libsodium, independently
    return sig


def write_share_files(keys: dict[int, KeyPackage], root: Path, generation: str) -> list[Path]:
    """The files keysafe writes for the shares: agent (token), user, recovery (passphrase)."""
    paths = []
    for i, key in keys.items():
        path = root / f"share-{generation}-{i}.json"
        secret = SecretBytes(bytearray(f"ks_agent_test-token-{generation}-{i}".encode()))
        if i == RECOVERY:
            doc = share_file.seal_recovery_share(
                "team", "vault-id", share_file.Share(key), secret, params=CHEAP_KDF
            )
        else:
            doc = share_file.seal_agent_share(
                "team", "vault-id", share_file.Share(key), secret, params=CHEAP_KDF
            )
        share_file.write(path, doc)
        # The file opens again to the same share: it really holds it, encrypted.
        opened = (share_file.open_recovery_share if i == RECOVERY else share_file.open_agent_share)(
            share_file.read(path, "share file"),
            SecretBytes(bytearray(f"ks_agent_test-token-{generation}-{i}".encode())),
        )
        assert opened.key.signing_share == key.signing_share
        paths.append(path)
    return paths


# -- the whole life of a wallet -------------------------------------------------------------


@pytest.fixture
def life(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> dict[str, object]:
    """Keygen, 6 signings, one aborted signing, a reshare (user + recovery), 4 signings, share
    files for both generations; returns the haystack and the facts to look for."""
    root = tmp_path / "life"
    root.mkdir()
    sink: list[tuple[str, bytes]] = []
    caplog.set_level(logging.DEBUG, logger="keysafe")
    run = run_dkg(SUITE, sid=bytes(range(100, 132)), rng_for=party_rng)
    sink += [(f"dkg message {n}", m) for n, m in enumerate(run.wire)]
    sink += [(f"dkg round1 {i}", p.to_bytes()) for i, p in run.round1.items()]
    sink += [(f"dkg round2 {k}", p.to_bytes()) for k, p in run.round2.items()]
    sink += [(f"dkg confirm {i}", c.to_bytes()) for i, c in run.confirmations.items()]
    old = run.keys
    sigs = 0
    for n in range(6):
        sign_pair(old, PAIRS[n % 3], f"payment {n}".encode(), root, "old", sink)
        sigs += 1
    # One session in which the agent's share is tampered with: aborted, culprit named.
    endpoints = {
        i: RecordingEndpoint(
            Signer(old[i], FileNonceStore(root / f"nonces-old-{i}"), check_message=approve),
            root,
            sink,
        )
        for i in (AGENT, USER)
    }
    endpoints[AGENT].tamper_round2 = True
    with pytest.raises(FrostError) as aborted:
        Coordinator(old[AGENT].public, (AGENT, USER), b"tampered").run(endpoints)
    assert aborted.value.culprit == AGENT
    sink.append(("abort error", str(aborted.value).encode()))
    old_files = write_share_files(old, root, "old")

    rs = run_reshare(
        {USER: old[USER], RECOVERY: old[RECOVERY]},
        (USER, RECOVERY),
        sid=bytes(range(200, 232)),
    )
    sink += [(f"reshare message {n}", m) for n, m in enumerate(rs.wire)]
    new = rs.keys
    for n in range(4):
        sign_pair(new, PAIRS[n % 3], f"after reshare {n}".encode(), root, "new", sink)
        sigs += 1
    new_files = write_share_files(new, root, "new")

    files = [
        (f"file {p.relative_to(root)} (final)", p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    ]
    logs = [(f"log {n}", line.encode()) for n, line in enumerate(log_lines(caplog))]
    return {
        "run": run,
        "old": old,
        "new": new,
        "signatures": sigs,
        "root": root,
        "messages": [x for x in sink if not x[0].startswith("file ")],
        "files": files + [x for x in sink if x[0].startswith("file ")],
        "logs": logs,
        "share_files": old_files + new_files,
    }


def log_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every captured record of 'keysafe.*' (DEBUG and up), formatted, with its raw arguments."""
    lines = [caplog.text]
    for record in caplog.records:
        lines.append(f"{record.name} {record.levelname} {record.getMessage()}")
        lines.append(repr(record.args))
        if record.exc_info:
            lines.append(logging.Formatter().formatException(record.exc_info))
    return lines


def group_secret() -> int:
    return sum(a_i0_from_outside(i) for i in PARTIES) % SUITE.order


def haystack(life: dict[str, object]) -> list[tuple[str, bytes]]:
    return list(life["messages"]) + list(life["files"]) + list(life["logs"])  # type: ignore[call-overload]


# -- the scan ---------------------------------------------------------------------------------


def test_frost_the_secret_computed_from_outside_is_the_wallet_key(life: dict[str, object]) -> None:
    """The scan is only meaningful if the test really holds the key: Σ a_i0 times G is the group
    key, before and after the reshare, and any two shares interpolate to it."""
    secret = group_secret()
    old: dict[int, KeyPackage] = life["old"]  # type: ignore[assignment]
    new: dict[int, KeyPackage] = life["new"]  # type: ignore[assignment]
    pk = old[AGENT].public.group_public_key
    assert SUITE.base_mul(secret) == pk
    assert new[AGENT].public.group_public_key == pk
    assert life["signatures"] == 10
    from keysafe.mpc.frost.keys import lagrange

    for keys in (old, new):
        for pair in PAIRS:
            combined = sum(lagrange(SUITE, i, pair) * keys[i].signing_share for i in pair)
            assert combined % SUITE.order == secret
    for i in PARTIES:
        assert new[i].signing_share != old[i].signing_share


def test_frost_group_secret_appears_in_no_message_file_or_log_line(
    life: dict[str, object],
) -> None:
    hay = haystack(life)
    messages, files, logs = life["messages"], life["files"], life["logs"]
    # The haystack is the real thing: many messages, nonce files seen mid-protocol, the share
    # files (they carry the group key in clear), and log lines from the protocol itself.
    assert len(messages) > 60, len(messages)  # type: ignore[arg-type]
    assert any("nonces-old" in w and "after round 1" in w for w, _ in files)  # type: ignore[attr-defined]
    pk_hex = life["old"][AGENT].public.group_public_key.hex().encode()  # type: ignore[index]
    assert any(pk_hex in data for w, data in files if "share-" in w)  # type: ignore[attr-defined]
    log_text = b"\n".join(d for _, d in logs)  # type: ignore[attr-defined]
    assert b"frost dkg confirmed" in log_text and b"frost reshare confirmed" in log_text
    assert b"aborted" in log_text
    assert found(group_secret(), hay) == []


def test_frost_no_message_or_file_holds_two_parties_signing_shares(
    life: dict[str, object],
) -> None:
    hay = haystack(life)
    for generation in ("old", "new"):
        keys: dict[int, KeyPackage] = life[generation]  # type: ignore[assignment]
        shares = {i: k.signing_share for i, k in keys.items()}
        assert shares_together(shares, hay) == [], generation
    # Nor do the messages carry even one signing share, or a party's constant term a_i0.
    wire = list(life["messages"])  # type: ignore[call-overload]
    for generation in ("old", "new"):
        for i, key in life[generation].items():  # type: ignore[attr-defined]
            assert found(key.signing_share, wire) == [], (generation, i)
    for i in PARTIES:
        assert found(a_i0_from_outside(i), hay) == [], i


def test_frost_share_files_hold_their_share_only_encrypted(life: dict[str, object]) -> None:
    for path in life["share_files"]:  # type: ignore[attr-defined]
        data = path.read_bytes()
        generation, i = path.stem.split("-")[1], int(path.stem.split("-")[2])
        share = life[generation][i].signing_share  # type: ignore[index]
        assert found(share, [(path.name, data)]) == [], path.name
        assert path.stat().st_mode & 0o777 == 0o600


# -- negative controls: the scan finds what is there ------------------------------------------


def test_frost_scan_finds_the_secret_when_it_is_planted(life: dict[str, object]) -> None:
    secret = group_secret()
    forms = scalar_forms(secret)
    clean = haystack(life)
    for name, form in forms.items():
        planted = [*clean[:5], ("planted", b"prefix " + form + b" suffix"), *clean[5:]]
        hits = found(secret, planted)
        assert hits and all(h.startswith("planted") for h in hits), name
    # In a real message, re-encoded with the secret in a field.
    msg = next(d for w, d in clean if w.startswith("SignRequest"))
    tampered = msg.replace(b'"message":"', b'"message":"' + forms["le-hex"])
    assert found(secret, [("tampered message", tampered)]) == ["tampered message: le-hex"]


def test_frost_scan_finds_two_shares_put_together(life: dict[str, object]) -> None:
    old: dict[int, KeyPackage] = life["old"]  # type: ignore[assignment]
    shares = {i: k.signing_share for i, k in old.items()}
    one = SUITE.serialize_scalar(shares[USER]).hex().encode()
    two = one + b"," + SUITE.serialize_scalar(shares[RECOVERY]).hex().encode()
    assert shares_together(shares, [("one", one)]) == []
    assert shares_together(shares, [("two", two)]) == [("two", [USER, RECOVERY])]
