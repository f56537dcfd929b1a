"""Chain support: HD key derivation (BIP-32 / SLIP-10) and address encoding for EVM and Solana."""
