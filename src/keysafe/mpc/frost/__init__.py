"""FROST threshold Schnorr signatures (RFC 9591) for Ed25519 and secp256k1.

- `groups`: the two ciphersuites (arithmetic from PyNaCl/libsodium and coincurve/libsecp256k1).
- `keys`: key packages, identifiers, Lagrange coefficients, transcripts.
- `signing`: RFC 9591 round one/two, share verification, aggregation, verification.
- `session/`: the signing protocol between parties: wire messages, nonce stores, the signer
  and the coordinator.
- `dkg`: Pedersen DKG with proofs of knowledge and a confirmation round (no trusted dealer).
- `reshare`: one protocol for refresh and for replacing a lost or compromised share.
- `key_messages`, `confirmations`: what the DKG and reshare messages share, and the echo and
  confirmation checks that end both.
- `canonical_json`: the one strict reader of canonical JSON every message above goes through.
"""
