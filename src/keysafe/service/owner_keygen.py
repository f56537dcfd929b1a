"""The owner's side of creating a 2-of-3 wallet with every party apart (`service/keygen.py`):
the owner's CLI is the recovery party; these operations carry its messages to the vault."""

from __future__ import annotations

from typing import Literal

from keysafe.agent_models import KeygenPost, KeygenView
from keysafe.chains import Chain
from keysafe.mpc.frost.keys import RECOVERY
from keysafe.service import keygen
from keysafe.service.keygen import Rebuild
from keysafe.service.owner_ops import Op
from keysafe.vault.vault import Vault


class KeygenStart(Op[KeygenView]):
    """Open a keygen for a new 2-of-3 wallet; `recovery_key` is the recovery party's ephemeral
    X25519 key (base64). The vault makes its own and waits for the agent."""

    kind: Literal["wallet.keygen-start"] = "wallet.keygen-start"
    wallet: str
    chain: Chain
    agent: str
    recovery_key: str

    def run(self, vault: Vault) -> KeygenView:
        return keygen.start(vault, self.wallet, self.chain, self.agent, self.recovery_key)


class ReshareStart(Op[KeygenView]):
    """Open a reshare of a 2-of-3 wallet by two of its parties (`quorum`: 1 agent, 2 vault,
    3 recovery); the recovery party takes part either way, from the owner's CLI."""

    kind: Literal["wallet.reshare-start"] = "wallet.reshare-start"
    wallet: str
    quorum: tuple[int, int]
    recovery_key: str
    rebuild: Rebuild | None = None  # agent + recovery on a vault with no record of the wallet

    def run(self, vault: Vault) -> KeygenView:
        return keygen.start_reshare(
            vault, self.wallet, self.quorum, self.recovery_key, rebuild=self.rebuild
        )


class KeygenExchange(Op[KeygenView]):
    """The recovery party's post to an open keygen; the answer holds what is there for it."""

    kind: Literal["wallet.keygen-exchange"] = "wallet.keygen-exchange"
    keygen_id: str
    post: KeygenPost

    def run(self, vault: Vault) -> KeygenView:
        return keygen.exchange(vault, self.keygen_id, RECOVERY, self.post)
