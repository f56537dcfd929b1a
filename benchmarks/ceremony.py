"""The three parties of a 2-of-3 keygen (mpc/keygen.py) run in one benchmark process, messages
passed by hand, with each party's CPU time counted apart. Only a benchmark does this: keysafe
itself runs each party in its own process (service/keygen.py)."""

from __future__ import annotations

import secrets
import time

from keysafe.mpc.frost.groups import Suite
from keysafe.mpc.frost.keys import PARTIES, KeyPackage
from keysafe.mpc.keygen import KeygenParty
from keysafe.mpc.share_file import Share


def keygen(suite: Suite) -> tuple[dict[int, Share], dict[int, float]]:
    """Every party's share, and every party's CPU seconds for the whole keygen."""
    sid = secrets.token_bytes(32)
    parties = {i: KeygenParty(suite, i, sid) for i in PARTIES}
    cpu = dict.fromkeys(PARTIES, 0.0)
    out: dict[int, dict[int, bytes]] = {}
    for i, p in parties.items():
        t0 = time.process_time()
        out[i] = p.start()
        cpu[i] += time.process_time() - t0
    for r in range(1, parties[1].rounds + 1):
        sent, out = out, {}
        for i, p in parties.items():
            t0 = time.process_time()
            out[i] = p.step(r, {j: sent[j][i] for j in PARTIES if j != i})
            cpu[i] += time.process_time() - t0
    shares = {i: p.share for i, p in parties.items()}
    assert all(s is not None for s in shares.values())
    return {i: s for i, s in shares.items() if s is not None}, cpu


def keys(suite: Suite) -> dict[int, KeyPackage]:
    return {i: s.key for i, s in keygen(suite)[0].items()}
