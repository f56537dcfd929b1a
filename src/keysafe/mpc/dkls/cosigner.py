"""The side of a two-party DKLs23 signature that is not the vault's (the agent in `keysafe mcp`):
round 1 over a hash this party computed itself, then rounds 2 and 3 against the vault's rounds 1
and 2. The vault finishes alone, inside its gated request, after its policy allowed the
signature; this side never sees the vault's round 3, so it cannot sign by itself.

Round 3 here runs this party's own checks on the vault (commitment, multiplication, Γ, public
key): a vault that cheats is named (culprit 2) before anything more is sent.
"""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Mapping
from typing import Any

from keysafe.chains.evm import signing as evm_signing
from keysafe.chains.evm.intents import personal_message_bytes
from keysafe.chains.evm.intents import typed_data_digest as typed_data_hash
from keysafe.chains.evm.tx import parse_transaction
from keysafe.errors import MalformedRequestError
from keysafe.mpc.dkls import signing
from keysafe.mpc.dkls.errors import DklsAbort
from keysafe.mpc.dkls.setup import PairState
from keysafe.mpc.frost.keys import USER, KeyPackage

logger = logging.getLogger(__name__)


def _b64(answer: Mapping[str, Any], name: str) -> bytes:
    try:
        return base64.b64decode(str(answer[name]), validate=True)
    except (KeyError, ValueError):
        raise MalformedRequestError(
            f"The vault's answer lacks a valid {name}.",
            next_step="check KEYSAFE_URL points at keysafe.",
        ) from None


def transaction_digest(transaction: Any) -> bytes:
    """The hash this party signs for an EVM transaction, computed here from the transaction.

    Raises:
        MalformedRequestError: malformed, or incomplete (a 2-of-3 wallet signs exactly what
            both parties hash, so nothing may be left for the vault to fill in).
    """
    if not isinstance(transaction, dict | str):
        raise MalformedRequestError(
            "An EVM transaction is a JSON object or hex.", next_step="pass the transaction."
        )
    tx = parse_transaction(transaction)
    if tx.missing_fields():
        raise MalformedRequestError(
            "A 2-of-3 EVM wallet signs exactly the transaction both parties hash: give it "
            f"complete; it lacks {', '.join(tx.missing_fields())}.",
            next_step="fill nonce, gas and fees before asking (keysafe does not fill them for a "
            "2-of-3 wallet).",
        )
    return evm_signing.transaction_hash(tx)


def message_digest(message: str) -> bytes:
    """The EIP-191 hash this party signs for `sign_message` (MetaMask's reading of the text)."""
    return evm_signing.personal_digest(personal_message_bytes(message))[1]


def typed_data_digest(typed_data: Mapping[str, Any]) -> bytes:
    """The EIP-712 hash this party signs for `sign_typed_data`, computed here from the document.

    Raises:
        MalformedRequestError: not EIP-712 typed data keysafe signs.
    """
    return typed_data_hash(typed_data)


def start(
    key: KeyPackage, pair: PairState, session: Mapping[str, Any], message_hash: bytes
) -> tuple[signing.SigningState, dict[str, str]]:
    """Round 1 for the session the other party opened (`session`: the vault's commit answer),
    with this party's pair state for that party.

    Raises:
        MalformedRequestError: the vault's answer is not a DKLs23 session.
        DklsAbort: this party's pair with the vault is banned or does not fit the key.
    """
    try:
        sid = bytes.fromhex(str(session["session_id"]))
    except (KeyError, ValueError):
        sid = b""
    if len(sid) != 32 or session.get("protocol") != "dkls23":
        raise MalformedRequestError(
            "The vault did not open a DKLs23 session for this wallet.",
            next_step="check that the share file belongs to this EVM wallet and KEYSAFE_URL.",
        )
    state, first = signing.round1(key, pair, message_hash, sid, secrets.token_bytes)
    return state, {
        "session_id": sid.hex(),
        "round1": base64.b64encode(first).decode(),
        # which share this is: the vault refuses a stale one (a file from before a refresh)
        # before its OT state ever meets it, instead of banning the new pair
        "verifying_share": key.public.verifying_shares[key.identifier].hex(),
    }


def finish(state: signing.SigningState, answer: Mapping[str, Any]) -> dict[str, str]:
    """Rounds 2 and 3 against the vault's rounds 1 and 2; what the gated request carries.

    Raises:
        MalformedRequestError: the vault's messages fail a check (culprit 2, logged).
    """
    try:
        second = signing.round2(state, _b64(answer, "round1"))
        third = signing.round3(state, _b64(answer, "round2"))
    except DklsAbort as exc:
        logger.warning("the vault failed a DKLs23 check: %s", exc.what)
        who = "vault" if state.peer == USER else "other party"
        raise MalformedRequestError(
            f"The {who}'s part of the threshold signature is invalid: {exc.what}",
            next_step="nothing was signed; check KEYSAFE_URL points at your own keysafe"
            + (
                "; this share will not sign with that vault again until a reshare."
                if exc.ban
                else "."
            ),
            culprit=state.peer,
            **({"banned": True} if exc.ban else {}),
        ) from None
    return {
        "session_id": str(answer["session_id"]),
        "round2": base64.b64encode(second).decode(),
        "round3": base64.b64encode(third).decode(),
    }
