"""A party's side of a keygen that is not the vault's: the recovery party in the owner's CLI,
the agent on its host. Both talk to the vault through `send` (the owner's session or the
agent's token) and run `mpc/keygen.py` behind the end-to-end channel.

- `join_code`: the join code ties the two together without the vault: the owner's CLI makes it
  and shows it; the owner hands it to the agent's host. It carries the keygen id, a hash of the
  recovery party's key and a MAC key the vault never sees. With it the agent knows the recovery
  key it is shown is the owner's, and the recovery party knows the agent's key is the agent's
  (its tag): a vault that relays cannot put itself in the middle and end up holding two shares.
- `party`: one party's rounds (`Party`), and keeping its new share before confirming.
- `agent_host`: the agent's host joining a ceremony, by code or by the shared join key.
"""

from keysafe.mpc.ceremony.agent_host import Joined, await_keyed, join_as_agent, keyed_codes
from keysafe.mpc.ceremony.join_code import JoinCode, check_recovery_tag, read_join_key
from keysafe.mpc.ceremony.party import (
    TTL_S,
    CeremonyFailed,
    Party,
    Send,
    keep_and_confirm,
    recovery_key,
)
from keysafe.mpc.channel import ChannelError
from keysafe.mpc.frost.keys import AGENT, RECOVERY, USER

__all__ = [
    "AGENT",
    "RECOVERY",
    "TTL_S",
    "USER",
    "CeremonyFailed",
    "ChannelError",
    "JoinCode",
    "Joined",
    "Party",
    "Send",
    "await_keyed",
    "check_recovery_tag",
    "join_as_agent",
    "keep_and_confirm",
    "keyed_codes",
    "read_join_key",
    "recovery_key",
]
