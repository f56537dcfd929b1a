"""The agent host's own copy of its policy (`KEYSAFE_AGENT_POLICY_FILE`), checked before the
agent adds its share to a 2-of-3 signature: defence in depth against a vault that no longer
enforces the policy (compromised, or its database edited). With a 2-of-3 wallet the vault
cannot sign alone, so a request this copy denies is never signed, whatever the vault decides.

The check runs the same policy engine on the same decoded intent as the vault does, with what
this host can know: the built-in chain and asset registry (a policy naming chains or assets the
owner added is refused at start, said plainly), and no budget history (windows and budgets stay
the vault's to enforce). Only a `deny` refuses here; `ask` is the vault's to put to the owner.
Every refusal is logged on this host, with the rule and the reason.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from solders.pubkey import Pubkey

from keysafe.chains.addresses import evm_address_from_public
from keysafe.chains.evm import intents as evm_intents
from keysafe.chains.evm.tx import parse_transaction as parse_evm
from keysafe.chains.solana import intents as sol_intents
from keysafe.chains.solana.tx import parse_transaction as parse_solana
from keysafe.errors import MalformedRequestError, PolicyDeniedError
from keysafe.mpc.share_file import Share
from keysafe.policy import engine
from keysafe.policy.intent import Intent
from keysafe.policy.lint import lint
from keysafe.policy.registry import ChainInfo, Registry
from keysafe.policy.rules import Policy, parse_policy

__all__ = ["ENV", "OwnPolicy"]

logger = logging.getLogger(__name__)

ENV: Final = "KEYSAFE_AGENT_POLICY_FILE"
_AGENT: Final = "this agent"  # the engine's agent name: only its status matters here


def _no_usage(_key: str, _since: datetime) -> tuple[Mapping[str, int], int]:
    return {}, 0  # this host keeps no history: budgets and windows are the vault's


@dataclass(frozen=True)
class OwnPolicy:
    """A policy file, checked and compiled once, and the registry this host knows."""

    path: Path
    policy: Policy
    registry: Registry

    @classmethod
    def from_env(cls) -> OwnPolicy | None:
        """The file `KEYSAFE_AGENT_POLICY_FILE` names, or None when it is not set.

        Raises:
            MalformedRequestError: unreadable, not a policy, or naming a chain or asset this
                host does not know (it would deny what the vault allows).
        """
        value = os.environ.get(ENV, "").strip()
        return cls.load(Path(value)) if value else None

    @classmethod
    def load(cls, path: Path) -> OwnPolicy:
        """Raises:
        MalformedRequestError: see `from_env`."""
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise MalformedRequestError(
                f"{ENV} names {path}, which cannot be read ({type(exc).__name__}).",
                next_step="point it at a copy of this agent's policy YAML, or unset it.",
            ) from None
        policy = parse_policy(text, source=str(path))
        registry = Registry.builtin()
        errors = lint(policy, registry, now=datetime.now(UTC)).errors
        if errors:
            raise MalformedRequestError(
                f"This host's copy of the policy ({path}) does not check out here: {errors[0]}.",
                next_step="the agent-side check knows only keysafe's built-in chains and assets; "
                f"fix the file or unset {ENV}.",
            )
        return cls(path, policy, registry)

    def check(self, intent: Intent) -> None:
        """Refuse `intent` when this copy of the policy denies it.

        Raises:
            PolicyDeniedError: denied here (logged on this host).
        """
        decision = engine.decide(
            self.policy,
            engine.AgentState(_AGENT, "active"),
            intent,
            registry=self.registry,
            usage=_no_usage,
            now=datetime.now(UTC),
        )
        if decision.outcome != "deny":
            return
        logger.warning(
            "agent-side policy (%s) refused %s with wallet %s: %s",
            self.path,
            intent.action,
            intent.wallet,
            decision.reason,
        )
        raise PolicyDeniedError(
            f"This agent's own copy of its policy refuses this: {decision.reason}",
            next_step="the agent's share was not used; ask the owner if the request is meant "
            f"to be allowed (and to update {self.path.name} on this host too).",
            side="agent",
            rule=decision.rule or "",
        )

    def check_transaction(
        self, share: Share, wallet: str, transaction: Any, chain: str | None
    ) -> None:
        """Decode `transaction` as the vault does and check it.

        Raises:
            PolicyDeniedError: denied here.
            MalformedRequestError: not a transaction of the wallet's chain, or a chain this
                host does not know.
        """
        if share.pairs:  # EVM (DKLs23)
            tx = parse_evm(transaction, chain_id=self._chain_id(chain))
            info = self._chain(tx.chain_id)
            intent = evm_intents.intent_from_tx(tx, registry=self.registry, chain=info)
        else:
            if not isinstance(transaction, str):
                raise MalformedRequestError(
                    "A Solana transaction is given as base64 text.",
                    next_step="serialize the transaction and base64-encode it.",
                )
            # A Solana signature names no cluster: the label is the caller's word. What mainnet's
            # rules deny is refused whatever the label says (the signature would be good there).
            address = str(Pubkey.from_bytes(share.key.public.group_public_key))
            sol_tx = parse_solana(transaction)
            for label in dict.fromkeys((chain or "solana", "solana")):
                intent = sol_intents.intent_from_tx(
                    sol_tx, registry=self.registry, chain=self._chain(label), wallet_address=address
                )
                self.check(intent.model_copy(update={"wallet": wallet}))
            return
        self.check(intent.model_copy(update={"wallet": wallet}))

    def check_message(
        self, share: Share, wallet: str, message: str, encoding: Literal["utf8", "base64"]
    ) -> None:
        """Check signing `message` with `wallet`, as the vault decodes it.

        Raises:
            PolicyDeniedError: denied here.
        """
        if share.pairs:  # EVM: EIP-191 personal_sign
            intent, _ = evm_intents.intent_from_personal_message(
                message, chain=self.registry.chain("ethereum")
            )
        else:
            intent, _ = sol_intents.intent_from_message(
                message, encoding=encoding, chain=self.registry.chain("solana")
            )
        self.check(intent.model_copy(update={"wallet": wallet}))

    def check_typed_data(self, share: Share, wallet: str, typed_data: Mapping[str, Any]) -> None:
        """Check signing EIP-712 `typed_data` with `wallet`, judged as the vault judges it (by
        what it grants).

        Raises:
            PolicyDeniedError: denied here.
        """
        domain = typed_data.get("domain")
        chain_ref = domain.get("chainId") if isinstance(domain, Mapping) else None
        info = self._chain(chain_ref if chain_ref is not None else "ethereum")
        address = evm_address_from_public(share.key.public.group_public_key)
        intent = evm_intents.intent_from_typed_data(
            typed_data, registry=self.registry, chain=info, wallet_address=address
        )
        self.check(intent.model_copy(update={"wallet": wallet}))

    def _chain_id(self, chain: str | None) -> int | None:
        return None if chain is None else self._chain(chain).chain_id

    def _chain(self, ref: str | int | None) -> ChainInfo:
        try:
            return self.registry.chain(str(ref))
        except LookupError:
            raise MalformedRequestError(
                f"This host's policy check does not know chain {str(ref)[:40]!r}.",
                next_step="use a built-in chain, or unset KEYSAFE_AGENT_POLICY_FILE.",
            ) from None
