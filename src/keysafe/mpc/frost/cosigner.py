"""The side of a two-party FROST signature that is not the vault's: given the vault's round-one
commitment, commit to fresh nonces and sign this party's share over the exact message.

The agent (in `keysafe mcp`, share 1) and the owner's CLI (the recovery share, 3) each run this in
their own process; the vault's share (2) never leaves the vault's process, and theirs never reach
it. The vault verifies the share it receives (RFC 9591 §5.4) before adding its own, so a wrong
share is named, never aggregated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from keysafe.errors import MalformedRequestError
from keysafe.mpc.frost import signing
from keysafe.mpc.frost.groups import ED25519
from keysafe.mpc.frost.keys import USER, KeyPackage


def vault_commitment(answer: Mapping[str, Any]) -> signing.SigningCommitment:
    """The vault's commitment from its answer (`session_id`, `hiding`, `binding`, hex).

    Raises:
        MalformedRequestError: a field is missing, not hex, or not a valid group element.
    """
    suite = ED25519  # every 2-of-3 wallet keysafe makes is FROST(Ed25519, SHA-512), Solana
    try:
        return signing.SigningCommitment(
            USER,
            suite.deserialize_element(bytes.fromhex(str(answer["hiding"])), what="vault hiding"),
            suite.deserialize_element(bytes.fromhex(str(answer["binding"])), what="vault binding"),
        )
    except (KeyError, ValueError):
        raise MalformedRequestError(
            "The vault's commitment is malformed.", next_step="check KEYSAFE_URL points at keysafe."
        ) from None


def part(key: KeyPackage, answer: Mapping[str, Any], message: bytes) -> dict[str, str]:
    """Everything the vault needs from this party for one signature over `message`: the
    session id it handed out, this party's commitment and its signature share (hex). The
    nonces live only in this call.

    Raises:
        MalformedRequestError: the vault's commitment is malformed.
        FrostError: this party's own key package is unusable for signing.
    """
    theirs = vault_commitment(answer)
    nonces, mine = signing.commit(key)
    commitments = sorted((mine, theirs), key=lambda c: c.identifier)
    share = signing.sign(key, nonces, message, commitments)
    del nonces  # used once; never stored anywhere
    return {
        "session_id": str(answer["session_id"]),
        "hiding": mine.hiding.hex(),
        "binding": mine.binding.hex(),
        "share": share.hex(),
    }
