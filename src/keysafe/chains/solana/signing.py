"""Sign Solana transactions and messages with a wallet seed, and verify before returning.

    >>> with vault.open_key(wallet.key_ref) as seed:          # doctest: +SKIP
    ...     signed = sign_transaction(tx, seed)
    >>> signed.signature_b58, signed.base64                    # doctest: +SKIP

What is checked before anything is returned (DESIGN.md step 6, "verify the result"):

* the wallet (derived from the seed) is a required signer of the transaction; its signature goes
  into its own slot, and every other slot is kept exactly as given;
* every non-empty signature slot verifies against its signer (solders `verify_with_results`);
  the wallet's signature is verified a second time with libsodium (PyNaCl), so one library's bug
  is not enough to return a bad signature;
* the signed transaction is parsed again from its serialised bytes and must carry the very
  message bytes that were decoded and judged, with the wallet's signature in the wallet's slot.

A bad signature that *we* produced is an `IntegrityError` (something is wrong inside keysafe); a
foreign slot holding a signature that does not verify is the caller's `MalformedRequestError`.
The seed never appears in an exception, repr or log line. solders copies it into its own memory
(`Keypair.from_seed` needs `bytes`), so wiping is best effort, as everywhere in Python.
"""

from __future__ import annotations

import logging
from base64 import b64encode
from dataclasses import dataclass
from typing import Final

from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from keysafe.chains.solana.tx import SolanaTx, parse_transaction
from keysafe.crypto.secret import SecretBytes
from keysafe.crypto.signatures import ED25519_SEED_SIZE, verify_ed25519
from keysafe.errors import IntegrityError, MalformedRequestError

__all__ = ["SignedSolanaTx", "sign_message", "sign_transaction"]

logger = logging.getLogger(__name__)

_DEFAULT_SIGNATURE: Final = Signature.default()
_INTEGRITY_NEXT: Final = "nothing was returned or sent; report this to the keysafe maintainers."


@dataclass(frozen=True, slots=True)
class SignedSolanaTx:
    """A transaction carrying the wallet's verified signature."""

    base64: str  # the whole signed transaction, ready for sendTransaction
    signature_b58: str  # the wallet's signature
    signer: str  # the wallet address
    fully_signed: bool  # every slot holds a verified signature (False: a co-signer still signs)

    @property
    def transaction_id(self) -> str | None:
        """The first signature (the fee payer's) is the id; None until the fee payer signs."""
        tx = parse_transaction(self.base64)
        first = tx.signatures[0]
        return None if first == _DEFAULT_SIGNATURE else str(first)


def _keypair(seed32: SecretBytes) -> Keypair:
    if not isinstance(seed32, SecretBytes) or len(seed32) != ED25519_SEED_SIZE:
        # A bug in the caller, not a domain error; the message never shows the value.
        raise ValueError(f"the Solana wallet seed must be SecretBytes of {ED25519_SEED_SIZE} bytes")
    # solders needs `bytes`: a short-lived copy of the seed exists (best-effort wiping).
    return Keypair.from_seed(bytes(seed32.reveal()))


def _check_present_signatures(
    tx: VersionedTransaction, signers: tuple[str, ...], results: list[bool] | None = None
) -> bool:
    """Raise on a non-empty slot that does not verify; True when every slot is filled.
    `results`: `tx.verify_with_results()` when the caller has it already."""
    if results is None:
        results = tx.verify_with_results()
    full = True
    for i, (sig, ok) in enumerate(zip(tx.signatures, results, strict=True)):
        if sig == _DEFAULT_SIGNATURE:
            full = False
        elif not ok:
            raise MalformedRequestError(
                f"Signature slot {i} (signer {signers[i]}) holds a signature that does not "
                "verify for this transaction; nothing was signed.",
                next_step="send the transaction with that slot empty, or with a valid signature.",
            )
    return full


def sign_transaction(tx: SolanaTx, seed32: SecretBytes) -> SignedSolanaTx:
    """Add the wallet's signature to `tx` and verify the result.

    Args:
        tx: the parsed transaction whose intent was judged.
        seed32: the wallet's 32-byte Ed25519 seed; the caller wipes it.

    Returns:
        The signed transaction (base64) and the wallet's signature (base58).

    Raises:
        MalformedRequestError: the wallet is not a signer, or a foreign signature is bad.
        IntegrityError: the signature or the re-decoded transaction does not check out.
    """
    keypair = _keypair(seed32)
    wallet = str(keypair.pubkey())
    index = _slot(tx, wallet)
    # Foreign signatures first: refuse before the key signs anything for a transaction that
    # could never land. The wallet's own slot is overwritten, so it is not judged here.
    signatures = list(tx.transaction.signatures)
    signatures[index] = _DEFAULT_SIGNATURE
    if any(sig != _DEFAULT_SIGNATURE for sig in signatures):  # a lone signer has none to judge
        _check_present_signatures(
            VersionedTransaction.populate(tx.message, signatures), tx.required_signers
        )
    signature = keypair.sign_message(tx.message_bytes)
    del keypair
    return _place(tx, index, wallet, signature)


def attach_signature(tx: SolanaTx, wallet: str, signature: bytes) -> SignedSolanaTx:
    """Put a signature made elsewhere (a threshold signature) into `wallet`'s slot and verify
    it exactly as `sign_transaction` verifies its own."""
    return _place(tx, _slot(tx, wallet), wallet, Signature.from_bytes(signature))


def _slot(tx: SolanaTx, wallet: str) -> int:
    index = tx.signer_index(wallet)
    if index is None:
        raise MalformedRequestError(
            f"The wallet {wallet} is not a required signer of this transaction; nothing was "
            "signed.",
            next_step="build the transaction with this wallet as fee payer or signer.",
        )
    return index


def _place(tx: SolanaTx, index: int, wallet: str, signature: Signature) -> SignedSolanaTx:
    """The transaction with `signature` in slot `index`, verified by libsodium and by solders,
    re-decoded to the very message that was judged."""
    signatures = list(tx.transaction.signatures)
    signatures[index] = signature
    signed = VersionedTransaction.populate(tx.message, signatures)
    if not verify_ed25519(bytes(Pubkey.from_string(wallet)), tx.message_bytes, bytes(signature)):
        raise IntegrityError(
            "The wallet's signature did not verify with libsodium.", next_step=_INTEGRITY_NEXT
        )
    results = signed.verify_with_results()
    if not results[index]:
        raise IntegrityError(
            "The wallet's signature did not verify with solders.", next_step=_INTEGRITY_NEXT
        )
    full = _check_present_signatures(signed, tx.required_signers, results)
    again = parse_transaction(b64encode(bytes(signed)).decode("ascii"))
    if again.message_bytes != tx.message_bytes or again.signatures[index] != signature:
        raise IntegrityError(
            "The signed transaction does not decode to the message that was judged.",
            next_step=_INTEGRITY_NEXT,
        )
    return SignedSolanaTx(again.base64, str(signature), wallet, full)


def sign_message(message: bytes, seed32: SecretBytes) -> str:
    """Ed25519-sign the exact `message` bytes; the base58 signature, verified twice.

    Raises:
        IntegrityError: the signature does not verify (with solders, then with libsodium).
    """
    keypair = _keypair(seed32)
    pubkey: Pubkey = keypair.pubkey()
    data = bytes(message)
    signature = keypair.sign_message(data)
    del keypair
    if not signature.verify(pubkey, data) or not verify_ed25519(
        bytes(pubkey), data, bytes(signature)
    ):
        raise IntegrityError("The message signature did not verify.", next_step=_INTEGRITY_NEXT)
    return str(signature)


def verify_message_signature(message: bytes, wallet: str, signature: bytes) -> str:
    """Check a message signature made elsewhere (a 2-of-3 threshold signature) exactly as
    `sign_message` checks its own; returns it base58.

    Raises:
        IntegrityError: it does not verify for `wallet` (with solders, then with libsodium).
    """
    pubkey = Pubkey.from_string(wallet)
    data = bytes(message)
    sig = Signature.from_bytes(signature)
    if not sig.verify(pubkey, data) or not verify_ed25519(bytes(pubkey), data, bytes(sig)):
        raise IntegrityError("The message signature did not verify.", next_step=_INTEGRITY_NEXT)
    return str(sig)
