"""What one unlock holds: the master key and the subkeys derived from it once per unlock (the
state-row MAC key, read on every request; the audit HMAC key, used by every audit entry), with
the checks and proofs they compute. `Vault.lock()` wipes them all (`wipe`).

Nothing here is persisted; a `Vault` keeps one `UnlockedKeys` and delegates to it.
"""

from __future__ import annotations

import hashlib
import hmac

from keysafe.crypto import jcs
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import VaultLockedError
from keysafe.vault import hierarchy, seals


class UnlockedKeys:
    def __init__(self, vault_id: str) -> None:
        self.vault_id = vault_id
        self.master: SecretBytes | None = None
        self.state_key: SecretBytes | None = None  # derived once per unlock: read on every request
        self.audit_key: SecretBytes | None = None  # likewise: every request writes audit entries
        self._sealed = seals.VerifiedSeals()

    def hold(self, master: SecretBytes) -> None:
        """Keep `master` (now this object's to wipe) and derive its subkeys."""
        self.state_key = hierarchy.subkey(master, "state-mac")
        self.audit_key = hierarchy.subkey(master, "audit-hmac")
        self.master = master

    def wipe(self) -> None:
        """Forget the verified seals and wipe every key held (locking)."""
        self._sealed.clear()
        for key in (self.state_key, self.audit_key):
            if key is not None:
                key.wipe()
        self.state_key = self.audit_key = None
        if self.master is not None:
            self.master.wipe()
            self.master = None

    def require_master(self) -> SecretBytes:
        """Raises VaultLockedError: nothing is held."""
        if self.master is None:
            raise locked()
        return self.master

    def seal_row(self, table: str, fields: seals.Fields) -> str | None:
        key = self.state_key
        return None if key is None else seals.mac(key.reveal(), self.vault_id, table, fields)

    def check_row(self, table: str, fields: seals.Fields, seal: str | None) -> seals.Seal:
        key = self.state_key
        if key is None:
            raise locked()
        return self._sealed.check(key.reveal(), self.vault_id, table, fields, seal)

    def subkey(self, purpose: hierarchy.Subkey) -> SecretBytes:
        return hierarchy.subkey(self.require_master(), purpose)

    def owner_proof(self, challenge: str) -> str:
        with self.subkey("owner-login") as key:
            message = jcs.dumps(
                {"purpose": "owner-login", "vault": self.vault_id, "challenge": challenge}
            )
            return hmac.new(bytes(key.reveal()), message, hashlib.sha256).hexdigest()

    def check_owner_proof(self, challenge: str, proof: str) -> bool:
        return hmac.compare_digest(self.owner_proof(challenge), proof)


def locked() -> VaultLockedError:
    return VaultLockedError(
        "The vault is locked, so keysafe cannot sign, use credentials or read secrets; "
        "this request was not queued.",
        next_step=(
            "the owner unlocks it (`keysafe unlock`, the web page, or the passphrase prompt), "
            "then retry."
        ),
    )
