"""The owner's signing operations, apart from `owner_ops` because they load eth-account.

Every CLI command imports `owner_ops`; only `keysafe wallet sign-message` needs the chains'
signing code (about a second and a half to import), so it imports this module when it runs.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from keysafe.agent_models import ThresholdCommitment
from keysafe.service import signing, threshold_owner, wallets
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

    def run(self, vault: Vault) -> MessageSigned:
        done = signing.sign_message_as_owner(vault, self.wallet, self.message)
        assert done.signature is not None  # the owner is never asked: it signs or raises
        return MessageSigned(summary=done.summary, address=done.address, signature=done.signature)


class VaultCommitment(ThresholdCommitment):
    """The vault's round-one commitment for one 2-of-3 signature (for an EVM wallet a fresh
    DKLs23 session only), as an agent gets it, and the wallet's public package (the owner's side
    checks its recovery file against it)."""

    model_config = ConfigDict(extra="ignore")  # as a plain model: only the fields below are kept
    public: dict[str, Any]


class ThresholdCommit(Op[VaultCommitment]):
    """First half of an owner signature with a 2-of-3 wallet: the vault commits (its share stays
    in the server; the recovery share stays in the owner's CLI)."""

    kind: Literal["wallet.threshold-commit"] = "wallet.threshold-commit"
    wallet: str

    def run(self, vault: Vault) -> VaultCommitment:
        return VaultCommitment.model_validate(threshold_owner.owner_commit(vault, self.wallet))


class VaultRounds(BaseModel):
    """The vault's DKLs23 rounds 1 and 2 (base64) for the owner's EVM signature."""

    session_id: str
    round1: str
    round2: str


class ThresholdExchange(Op[VaultRounds]):
    """Between the halves, for an EVM wallet (DKLs23): the recovery side's round 1 in, the
    vault's rounds 1 and 2 out; the vault hashes `message` itself."""

    kind: Literal["wallet.threshold-exchange"] = "wallet.threshold-exchange"
    wallet: str
    message: str
    session_id: str
    round1: str
    verifying_share: str

    def run(self, vault: Vault) -> VaultRounds:
        fields = self.model_dump(include={"session_id", "round1", "verifying_share"})
        return VaultRounds.model_validate(
            threshold_owner.owner_exchange(vault, self.wallet, self.message, fields)
        )


class ThresholdSigned(BaseModel):
    address: str
    signature: str


class ThresholdCosign(Op[ThresholdSigned]):
    """Second half: the recovery side's commitment and signature share over `message`; the
    vault verifies it, adds its own and returns the verified signature."""

    kind: Literal["wallet.threshold-cosign"] = "wallet.threshold-cosign"
    wallet: str
    message: str  # the text; signed as its UTF-8 bytes, as `wallet sign-message` does
    session_id: str
    hiding: str | None = None  # FROST
    binding: str | None = None
    share: str | None = None
    round2: str | None = None  # DKLs23 (EVM)
    round3: str | None = None

    def run(self, vault: Vault) -> ThresholdSigned:
        fields = self.model_dump(
            include={"session_id", "hiding", "binding", "share", "round2", "round3"},
            exclude_none=True,
        )
        signature = threshold_owner.owner_cosign(vault, self.wallet, self.message.encode(), fields)
        address = next(w.address for w in wallets.list_wallets(vault) if w.name == self.wallet)
        return ThresholdSigned(address=address, signature=signature)
