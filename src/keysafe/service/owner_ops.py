"""The owner's changes to the vault as typed operations, run on whichever side holds the key.

An owner command either opens the vault files and unlocks them itself, or, while `keysafe serve`
runs unlocked for the same home, sends the operation to that server over the owner session so the
passphrase is not asked for again (issue 14, item 10). Both sides call `Op.run` with an unlocked
vault, so a command behaves the same either way: one place for each rule, and the server route is
one line. Each operation names its result type, which is also how the CLI reads the server's answer.
The owner's signing operation is in `owner_signing` (it loads the chains' signing libraries,
which the CLI's other commands do not need), the key ceremonies' in `owner_keygen`, the
notification channels' in `owner_notify`, and `any_owner_op` names them all for the server.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, SecretStr

from keysafe.chains import Chain
from keysafe.crypto.secret import SecretBytes
from keysafe.errors import MalformedRequestError
from keysafe.service import (
    agents,
    backup,
    credentials,
    data,
    epochs,
    pairing,
    placeholders,
    policies,
    registry,
    rotation_due,
    sealed_state,
    wallets,
)
from keysafe.service.agents import AgentView
from keysafe.service.credentials import CredentialView
from keysafe.service.data import DataView
from keysafe.service.models import Attachment, DataClass
from keysafe.service.rotation_due import DueRotation
from keysafe.service.sealed_state import StateRow
from keysafe.service.wallets import WalletView
from keysafe.vault.vault import Vault

R = TypeVar("R")  # a pydantic model or a dataclass view: both read back with a TypeAdapter


class Done(BaseModel):
    """The result of an operation with nothing more to say."""

    ok: Literal[True] = True


class AgentAdded(BaseModel):
    agent: AgentView
    # Shown once to the owner (None for key-only agents); never in a repr, log line or traceback.
    token: str | None = Field(repr=False)


class AgentChanged(BaseModel):
    agent: AgentView


class AgentToken(BaseModel):
    name: str
    token: str = Field(repr=False)  # shown once to the owner; never in a repr


class PolicyWarning(BaseModel):
    rule: str | None
    message: str


class PolicySet(BaseModel):
    agent: str
    digest: str
    rules: int
    warnings: list[PolicyWarning]


class Wallets(BaseModel):
    wallets: list[WalletView]


class Placeholder(BaseModel):
    credential: str
    agent: str
    placeholder: str  # shown once to the owner


class ChainAdded(BaseModel):
    name: str
    native: str
    max_fee: str  # the fee ceiling as plain digits, in the native coin


class AssetAdded(BaseModel):
    symbol: str
    chain: str
    decimals: int


class SealReview(BaseModel):
    rows: list[StateRow]


class Sealed(BaseModel):
    sealed: int


# A secret the owner hands over (a credential, a data value, a private key) travels as base64 in
# a SecretStr: never in a repr or a log line, and written out only when the operation is sent as
# JSON to the owner's own server over its session.
WireSecret = Annotated[
    SecretStr, PlainSerializer(lambda v: v.get_secret_value(), return_type=str, when_used="json")
]


def wire(secret: SecretBytes) -> SecretStr:
    """`secret` as a WireSecret (the caller still wipes its SecretBytes)."""
    return SecretStr(base64.b64encode(bytes(secret.reveal())).decode())


def unwired(value: SecretStr, what: str) -> SecretBytes:
    """The secret a WireSecret carries, for the caller to wipe.

    Raises:
        MalformedRequestError: it is not base64.
    """
    try:
        raw = base64.b64decode(value.get_secret_value(), validate=True)
    except (binascii.Error, ValueError):
        raise MalformedRequestError(
            f"The {what} is not base64.", next_step=f"send the {what} base64-encoded."
        ) from None
    return SecretBytes.adopt(bytearray(raw))


class Op(BaseModel, Generic[R]):
    """One change the owner makes; `run` needs the vault unlocked. Its result type is the one
    it is declared with (`class AddAgent(Op[AgentAdded])`), kept in `result` for the caller
    that reads the answer back from the server."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    result: ClassVar[type[Any]]

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        for base in cls.__mro__:
            declared = getattr(base, "__pydantic_generic_metadata__", None)
            if declared and declared["origin"] is Op and declared["args"]:
                cls.result = declared["args"][0]
                return

    def run(self, vault: Vault) -> R:
        raise NotImplementedError


class Removal(Op[Done]):
    """An operation that removes one named thing; each subclass names its `kind` and the
    service function that does it (`remover`)."""

    kind: str
    name: str
    # Read through the class, so the plain function is not bound as a method.
    remover: ClassVar[Callable[[Vault, str], None]]

    def run(self, vault: Vault) -> Done:
        type(self).remover(vault, self.name)
        return Done()


def _token_text(token: SecretBytes | None) -> str | None:
    if token is None:
        return None
    with token:
        return bytes(token.reveal()).decode()


class AddAgent(Op[AgentAdded]):
    kind: Literal["agent.add"] = "agent.add"
    name: str
    public_key: str | None = None
    policy: str | None = None  # YAML text
    policy_source: str | None = None  # where the text came from, for the audit log

    def run(self, vault: Vault) -> AgentAdded:
        source = self.policy_source or "policy"
        if self.policy is not None:  # checked first, so a bad policy leaves no half-made agent
            policies.validated(vault, self.policy, source=source)
        view, token = agents.add_agent(vault, self.name, public_key=self.public_key)
        if self.policy is not None:
            policies.set_policy(vault, self.name, self.policy, source=source)
            view = next(v for v in agents.list_agents(vault) if v.name == self.name)
        return AgentAdded(agent=view, token=_token_text(token))


class SetAgentStatus(Op[AgentChanged]):
    kind: Literal["agent.status"] = "agent.status"
    name: str
    status: agents.Status

    def run(self, vault: Vault) -> AgentChanged:
        view = agents.set_status(vault, self.name, self.status)
        if self.status == "revoked" and vault.is_unlocked:
            # What the revoked agent may have seen of the running process's keys opens nothing
            # written from now on.
            epochs.rotate(vault, reason="agent.revoke")
        return AgentChanged(agent=view)


class RotateToken(Op[AgentToken]):
    kind: Literal["agent.rotate-token"] = "agent.rotate-token"
    name: str

    def run(self, vault: Vault) -> AgentToken:
        token = _token_text(agents.rotate_token(vault, self.name))
        assert token is not None  # rotate_token always makes one
        return AgentToken(name=self.name, token=token)


class PauseAll(Op[Done]):
    kind: Literal["pause-all"] = "pause-all"
    paused: bool

    def run(self, vault: Vault) -> Done:
        agents.set_paused_all(vault, self.paused)
        return Done()


class SetPolicy(Op[PolicySet]):
    kind: Literal["policy.set"] = "policy.set"
    agent: str
    text: str
    source: str = "policy"

    def run(self, vault: Vault) -> PolicySet:
        policy, report = policies.set_policy(vault, self.agent, self.text, source=self.source)
        return PolicySet(
            agent=self.agent,
            digest=policy.digest(),
            rules=len(policy.rules),
            warnings=[PolicyWarning(rule=w.rule, message=w.message) for w in report.warnings],
        )


class AddCredential(Op[CredentialView]):
    kind: Literal["credential.add"] = "credential.add"
    name: str
    hosts: list[str]
    attach: Attachment
    secret: WireSecret
    replace: bool = False

    def run(self, vault: Vault) -> CredentialView:
        with unwired(self.secret, "credential's secret") as secret:
            return credentials.add_credential(
                vault,
                self.name,
                secret,
                hosts=self.hosts,
                attach=self.attach.checked(),
                replace=self.replace,
            )


class IssuePlaceholder(Op[Placeholder]):
    kind: Literal["credential.placeholder"] = "credential.placeholder"
    credential: str
    agent: str
    replace: bool = False  # the agent's older placeholders for it stop working

    def run(self, vault: Vault) -> Placeholder:
        with placeholders.issue(vault, self.credential, self.agent, replace=self.replace) as token:
            text = bytes(token.reveal()).decode()
        return Placeholder(credential=self.credential, agent=self.agent, placeholder=text)


class RemoveCredential(Removal):
    kind: Literal["credential.remove"] = "credential.remove"
    remover = credentials.remove_credential


class SetData(Op[DataView]):
    kind: Literal["data.set"] = "data.set"
    name: str
    value: WireSecret
    data_class: DataClass = DataClass.STANDARD

    def run(self, vault: Vault) -> DataView:
        with unwired(self.value, "value") as value:
            return data.set_data(vault, self.name, value, data_class=self.data_class)


class RemoveData(Removal):
    kind: Literal["data.remove"] = "data.remove"
    remover = data.remove_data


class CreateWallet(Op[WalletView]):
    kind: Literal["wallet.create"] = "wallet.create"
    name: str
    chain: Chain
    index: int | None = None

    def run(self, vault: Vault) -> WalletView:
        return wallets.create_wallet(vault, self.name, self.chain, index=self.index)


class ImportWallet(Op[WalletView]):
    kind: Literal["wallet.import"] = "wallet.import"
    name: str
    chain: Chain
    key: WireSecret  # the private key's text, as the owner typed it

    def run(self, vault: Vault) -> WalletView:
        with unwired(self.key, "private key") as key:
            return wallets.import_wallet(vault, self.name, self.chain, key)


class AddChain(Op[ChainAdded]):
    kind: Literal["chain.add"] = "chain.add"
    name: str
    family: Chain
    chain_id: int | None = None
    rpc: str | None = None
    max_fee: str | None = None

    def run(self, vault: Vault) -> ChainAdded:
        info = registry.add_chain(
            vault,
            self.name,
            family=self.family,
            chain_id=self.chain_id,
            rpc=self.rpc,
            max_fee=self.max_fee,
        )
        return ChainAdded(name=info.name, native=info.native, max_fee=info.fee_ceiling_text)


class AddAsset(Op[AssetAdded]):
    kind: Literal["asset.add"] = "asset.add"
    symbol: str
    chain: str
    address: str
    decimals: int

    def run(self, vault: Vault) -> AssetAdded:
        info = registry.add_asset(
            vault, self.symbol, chain=self.chain, address=self.address, decimals=self.decimals
        )
        return AssetAdded(symbol=info.symbol, chain=info.chain, decimals=info.decimals)


class ReviewSeals(Op[SealReview]):
    """The agent, policy and setting rows without a valid seal, for the owner to look at."""

    kind: Literal["seal.review"] = "seal.review"

    def run(self, vault: Vault) -> SealReview:
        return SealReview(rows=sealed_state.review(vault))


class SealRows(Op[Sealed]):
    """Seal exactly the rows the owner was shown; one changed since then stays unsealed."""

    kind: Literal["seal.rows"] = "seal.rows"
    rows: list[StateRow]

    def run(self, vault: Vault) -> Sealed:
        return Sealed(sealed=sealed_state.seal(vault, self.rows))


class ListWallets(Op[Wallets]):
    kind: Literal["wallet.list"] = "wallet.list"

    def run(self, vault: Vault) -> Wallets:
        return Wallets(wallets=wallets.list_wallets(vault))


class BackupMade(BaseModel):
    """A backup made (or restored): its header, and for a new one the sealed file's bytes."""

    format: int
    vault_id: str
    created_at: str
    records: int
    entries: int
    cipher: str
    blob: str | None = None  # base64 of the sealed backup, for the CLI to write


class CreateBackup(Op[BackupMade]):
    """Seal a backup of the whole vault and hand it back; the owner's CLI writes it to `file`.
    The server never writes outside its home, so the file is written by the caller."""

    kind: Literal["backup.create"] = "backup.create"
    file: str  # where the CLI will write it, for the audit log

    def run(self, vault: Vault) -> BackupMade:
        header, blob = backup.backup_blob(vault, self.file[:1024])
        return BackupMade.model_validate(
            header.to_dict() | {"blob": base64.b64encode(blob).decode()}
        )


class RestoreBackup(Op[BackupMade]):
    """Restore a backup the owner's CLI read, into this vault (same vault only). Run in the
    server when it is up, so its caches and open epochs see the restored records at once."""

    kind: Literal["backup.restore"] = "backup.restore"
    blob: str  # base64 of the backup file

    def run(self, vault: Vault) -> BackupMade:
        try:
            raw = base64.b64decode(self.blob, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedRequestError(
                "The backup is not base64.", next_step="send the backup file base64-encoded."
            ) from None
        return BackupMade.model_validate(backup.restore_blob(vault, raw).to_dict())


class Invitation(BaseModel):
    agent: str
    invite: str  # `ksi_…`: a one-time capability, shown to the owner once
    relay: str
    expires_in: int  # seconds


class CreateInvite(Op[Invitation]):
    """A one-time invite for a remote sidecar to pair as a new agent. Run in the server (it holds
    the open invites and the relay link), never in the CLI."""

    kind: Literal["agent.invite"] = "agent.invite"
    agent: str
    relay: str | None = None  # the relay the sidecar should use; default: the server's own
    policy: str | None = None
    policy_source: str | None = None

    def run(self, vault: Vault) -> Invitation:
        relay = self.relay or pairing.server_relay(vault)
        text = pairing.create_invite(
            vault, self.agent, relay=relay, policy=self.policy, policy_source=self.policy_source
        )
        return Invitation(
            agent=self.agent, invite=text, relay=relay, expires_in=pairing.INVITE_TTL_S
        )


class Rotated(BaseModel):
    epoch: int
    resealed: int
    destroyed: list[int]


class RotationPolicySet(BaseModel):
    after: str  # as RotationPolicy.describe() says it
    due: list[DueRotation]


class SetRotationPolicy(Op[RotationPolicySet]):
    """When agents' tokens, keys and placeholders are due for replacement (owner settings)."""

    kind: Literal["rotation.policy"] = "rotation.policy"
    after_hours: int | None = None
    after_uses: int | None = None  # 0: no use count

    def run(self, vault: Vault) -> RotationPolicySet:
        after = None if self.after_hours is None else timedelta(hours=self.after_hours)
        pol = rotation_due.set_policy(vault, after, self.after_uses)
        return RotationPolicySet(after=pol.describe(), due=rotation_due.due(vault)[1])


class RotateEpochs(Op[Rotated]):
    """A new epoch key, every record sealed again under it, the old keys destroyed."""

    kind: Literal["epoch.rotate"] = "epoch.rotate"

    def run(self, vault: Vault) -> Rotated:
        done = epochs.rotate(vault, reason="owner")
        return Rotated(epoch=done.epoch, resealed=done.resealed, destroyed=list(done.destroyed))
