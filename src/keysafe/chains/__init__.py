"""Chain support: HD key derivation (BIP-32 / SLIP-10), address encoding, and per family
(`evm/`, `solana/`) transaction parsing, intent decoding, signing and RPC.

`Chain` is the one type for a chain family, used by the registry, the services and the CLI.
"""

from enum import StrEnum

__all__ = ["Chain"]


class Chain(StrEnum):
    """A chain family: how its keys, addresses, transactions and signatures work."""

    EVM = "evm"  # Ethereum and EVM chains (Base, …): secp256k1 keys, RLP transactions
    SOLANA = "solana"  # Solana clusters: ed25519 keys, legacy and v0 transactions
