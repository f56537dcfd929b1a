"""Loaded by every keysafe process a test starts with this directory on PYTHONPATH: it records
each share a process loads (process, command, wallet key, party) in KS_TEST_SHARE_LOG, so a
test can check that no process ever holds two shares of one wallet. Every share keysafe loads,
from a share file or from the vault's record, goes through `Share.from_secret_bytes`; every
share a keygen makes comes out of `KeygenParty.step`."""

import os
import sys

_LOG = os.environ.get("KS_TEST_SHARE_LOG")
if _LOG:
    from keysafe.mpc import share_file

    _PROCESS = f"{os.getpid()}-{os.urandom(4).hex()}"  # a pid can be reused; this cannot
    _load = share_file.Share.from_secret_bytes.__func__  # type: ignore[attr-defined]

    def _record(public, identifier):  # type: ignore[no-untyped-def]
        with open(_LOG, "a", encoding="utf-8") as log:
            command = " ".join(os.path.basename(a) for a in sys.argv[:3])
            log.write(f"{_PROCESS}\t{command}\t{public.group_public_key.hex()}\t{identifier}\n")

    def _logged(cls, plain, identifier, public):  # type: ignore[no-untyped-def]
        share = _load(cls, plain, identifier, public)
        _record(public, identifier)
        return share

    share_file.Share.from_secret_bytes = classmethod(_logged)  # type: ignore[method-assign]

    from keysafe.mpc import keygen

    _step = keygen.KeygenParty.step

    def _stepped(self, round_, inbox):  # type: ignore[no-untyped-def]
        out = _step(self, round_, inbox)
        if self.share is not None:  # this step made the party's new share
            _record(self.share.key.public, self.share.key.identifier)
        return out

    keygen.KeygenParty.step = _stepped  # type: ignore[method-assign]
