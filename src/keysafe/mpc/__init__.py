"""Threshold signing: protocols no library offers, written from the papers and RFCs.

`frost/` is FROST (RFC 9591) for Ed25519 and secp256k1, with a Pedersen DKG and resharing. The
group private key is never computed by any code path here.
"""
