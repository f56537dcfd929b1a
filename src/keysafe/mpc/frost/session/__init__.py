"""The FROST signing protocol between parties (threshold.md §1.4, S0–S3), with typed, versioned
messages bound to a session id, single-use nonces that survive crashes, and a coordinator that
names whoever cheats.

    >>> store = FileNonceStore(home / "frost-nonces")                        # doctest: +SKIP
    >>> agent = Signer(agent_key, store, check_message=policy_allows)        # doctest: +SKIP
    >>> coordinator = Coordinator(public, [AGENT, USER], message)            # doctest: +SKIP
    >>> signature = coordinator.run({AGENT: agent, USER: user_endpoint})     # doctest: +SKIP

- `messages`: S0 `SignRequest`, S1 `Commitments`, S2 `SigningPackage`, S3 `SignatureShare`,
  and their canonical JSON wire form; every parse failure names the message, field and sender.
- `nonces`: `NonceStore`, durable (`FileNonceStore`) or in memory (`MemoryNonceStore`): round
  one stores the nonces before the commitment leaves, round two marks them used before a share
  is computed, so a second round two for a session is refused even after a restart.
- `signer`: a participant's side; it runs its own `check_message` policy hook on the request
  before it commits, and signs only the message it approved, for the participants it agreed to.
- `coordinator`: accepts each message only from the participant it claims to be from, verifies
  every share on arrival (identifiable abort), and returns only a signature that verifies.

Every failure aborts the session for good (`FrostError`); nothing is retried with the same
nonces. Channels must be authenticated and should be encrypted: messages are transaction intents.
"""

from keysafe.mpc.frost.session.coordinator import Coordinator, CoordinatorState
from keysafe.mpc.frost.session.messages import (
    MAX_MESSAGE_SIZE,
    PROTOCOL_VERSION,
    SESSION_ID_SIZE,
    Commitments,
    SignatureShare,
    SigningPackage,
    SignRequest,
)
from keysafe.mpc.frost.session.nonces import (
    FileNonceStore,
    MemoryNonceStore,
    NonceRecord,
    NonceStore,
)
from keysafe.mpc.frost.session.signer import Signer, SignerEndpoint

__all__ = [
    "MAX_MESSAGE_SIZE",
    "PROTOCOL_VERSION",
    "SESSION_ID_SIZE",
    "Commitments",
    "Coordinator",
    "CoordinatorState",
    "FileNonceStore",
    "MemoryNonceStore",
    "NonceRecord",
    "NonceStore",
    "SignRequest",
    "SignatureShare",
    "Signer",
    "SignerEndpoint",
    "SigningPackage",
]
