"""The owner's changes to the vault as typed operations, run on whichever side holds the key.

An owner command either opens the vault files and unlocks them itself, or, while `keysafe serve`
runs unlocked for the same home, sends the operation to that server over the owner session so the
passphrase is not asked for again (issue 14, item 10). Both sides call `Op.run` with an unlocked
vault, so a command behaves the same either way: one place for each rule, and the server route is
one line. Each operation names its result type, which is also how the CLI reads the server's answer.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_serializer

from keysafe.crypto.secret import SecretBytes
from keysafe.errors import MalformedRequestError
from keysafe.service import agents, credentials, data, policies, wallets
from keysafe.service.agents import AgentView
from keysafe.service.credentials import CredentialView
from keysafe.service.models import Attachment, Chain
from keysafe.service.wallets import WalletView
from keysafe.vault.vault import Vault

R = TypeVar("R")  # a pydantic model or a dataclass view: both read back with a TypeAdapter


class Done(BaseModel):
    """The result of an operation with nothing more to say."""

    ok: Literal[True] = True


class AgentAdded(BaseModel):
    agent: AgentView
    token: str | None  # shown once to the owner; None for key-only agents


class AgentChanged(BaseModel):
    agent: AgentView


class AgentToken(BaseModel):
    name: str
    token: str


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


class Op(BaseModel, Generic[R]):
    """One change the owner makes; `run` needs the vault unlocked."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    result: ClassVar[type[Any]]

    def run(self, vault: Vault) -> R:
        raise NotImplementedError


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

    result = AgentAdded

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

    result = AgentChanged

    def run(self, vault: Vault) -> AgentChanged:
        return AgentChanged(agent=agents.set_status(vault, self.name, self.status))


class RotateToken(Op[AgentToken]):
    kind: Literal["agent.rotate-token"] = "agent.rotate-token"
    name: str

    result = AgentToken

    def run(self, vault: Vault) -> AgentToken:
        token = _token_text(agents.rotate_token(vault, self.name))
        assert token is not None  # rotate_token always makes one
        return AgentToken(name=self.name, token=token)


class PauseAll(Op[Done]):
    kind: Literal["pause-all"] = "pause-all"
    paused: bool

    result = Done

    def run(self, vault: Vault) -> Done:
        agents.set_paused_all(vault, self.paused)
        return Done()


class SetPolicy(Op[PolicySet]):
    kind: Literal["policy.set"] = "policy.set"
    agent: str
    text: str
    source: str = "policy"

    result = PolicySet

    def run(self, vault: Vault) -> PolicySet:
        policy, report = policies.set_policy(vault, self.agent, self.text, source=self.source)
        return PolicySet(
            agent=self.agent, digest=policy.digest(), rules=len(policy.rules),
            warnings=[PolicyWarning(rule=w.rule, message=w.message) for w in report.warnings],
        )  # fmt: skip


class AddCredential(Op[CredentialView]):
    kind: Literal["credential.add"] = "credential.add"
    name: str
    hosts: list[str]
    attach: Attachment
    secret: SecretStr  # base64 of the secret's bytes; never in a repr
    replace: bool = False

    result = CredentialView

    @field_serializer("secret", when_used="json")
    def _reveal(self, value: SecretStr) -> str:
        return value.get_secret_value()  # only to the owner's own server, over its session

    @classmethod
    def of(
        cls, name: str, secret: SecretBytes, *, hosts: list[str], attach: Attachment,
        replace: bool,
    ) -> AddCredential:  # fmt: skip
        encoded = base64.b64encode(bytes(secret.reveal())).decode()
        return cls(
            name=name, hosts=hosts, attach=attach, secret=SecretStr(encoded), replace=replace
        )

    def run(self, vault: Vault) -> CredentialView:
        try:
            raw = base64.b64decode(self.secret.get_secret_value(), validate=True)
        except (binascii.Error, ValueError):
            raise MalformedRequestError(
                "The credential's secret is not base64.",
                next_step="send the secret base64-encoded.",
            ) from None
        with SecretBytes.adopt(bytearray(raw)) as secret:
            return credentials.add_credential(
                vault, self.name, secret, hosts=self.hosts, attach=self.attach.checked(),
                replace=self.replace,
            )  # fmt: skip


class RemoveCredential(Op[Done]):
    kind: Literal["credential.remove"] = "credential.remove"
    name: str

    result = Done

    def run(self, vault: Vault) -> Done:
        credentials.remove_credential(vault, self.name)
        return Done()


class RemoveData(Op[Done]):
    kind: Literal["data.remove"] = "data.remove"
    name: str

    result = Done

    def run(self, vault: Vault) -> Done:
        data.remove_data(vault, self.name)
        return Done()


class CreateWallet(Op[WalletView]):
    kind: Literal["wallet.create"] = "wallet.create"
    name: str
    chain: Chain
    index: int | None = None

    result = WalletView

    def run(self, vault: Vault) -> WalletView:
        return wallets.create_wallet(vault, self.name, self.chain, index=self.index)


class ListWallets(Op[Wallets]):
    kind: Literal["wallet.list"] = "wallet.list"

    result = Wallets

    def run(self, vault: Vault) -> Wallets:
        return Wallets(wallets=wallets.list_wallets(vault))


AnyOp = Annotated[
    AddAgent | SetAgentStatus | RotateToken | PauseAll | SetPolicy | AddCredential
    | RemoveCredential | RemoveData | CreateWallet | ListWallets,
    Field(discriminator="kind"),
]  # fmt: skip
