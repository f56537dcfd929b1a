"""The owner's signing operation, apart from `owner_ops` because it loads eth-account.

Every CLI command imports `owner_ops`; only `keysafe wallet sign-message` needs the chains'
signing code (about a second and a half to import), so it imports this module when it runs.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from keysafe.service import signing
from keysafe.service.owner_ops import Op
from keysafe.vault.vault import Vault


class MessageSigned(BaseModel):
    summary: str
    address: str
    signature: str


class SignMessage(Op[MessageSigned]):
    """The owner signs a message with one of the vault's wallets (no agent, no policy)."""

    kind: Literal["wallet.sign-message"] = "wallet.sign-message"
    wallet: str
    message: str

    result = MessageSigned

    def run(self, vault: Vault) -> MessageSigned:
        done = signing.sign_message(vault, None, self.wallet, self.message)
        assert done.signature is not None  # the owner is never asked: it signs or raises
        return MessageSigned(summary=done.summary, address=done.address, signature=done.signature)
