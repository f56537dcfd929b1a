"""FROST threshold Schnorr signatures (RFC 9591) for Ed25519 and secp256k1.

- `groups`: the two ciphersuites (arithmetic from PyNaCl/libsodium and coincurve/libsecp256k1).
- `keys`: key packages, identifiers, Lagrange coefficients, transcripts.
- `signing`: RFC 9591 round one/two, share verification, aggregation, verification.
- `dkg`: Pedersen DKG with proofs of knowledge and a confirmation round (no trusted dealer).
- `reshare`: one protocol for refresh and for replacing a lost or compromised share.
"""
