"""DKLs23 two-party threshold ECDSA (Doerner, Kondi, Lee, shelat; ePrint 2023/765) on keysafe's
2-of-3 Shamir sharing over secp256k1: any two of agent, user (the vault) and recovery sign an
Ethereum transaction together; the private key is never assembled anywhere.

The shares come from the same Feldman-verified DKG and reshare as FROST
(`keysafe.mpc.frost.dkg`, suite `SECP256K1`). On top of the shares each pair of parties runs a
one-time setup (`setup`), and every signature is three rounds between two parties (`signing`):

- `gf2`: multiplication in GF(2^256) by a fixed element, for the OT-extension check.
- `base_ot`: endemic base OT with the sender's DLog proof and the receiver's OR proof.
- `ote`: KOS15 correlated OT extension with its consistency check.
- `multiply`: DKLs19/23 random vector OLE with the "forced reuse" check.
- `setup`: the pairwise base OTs and zero-share seed, once per pair after a DKG or reshare.
- `signing`: DKLs23 Protocol 3.6 for two parties, the Γ checks and the final ECDSA check.

Any failed check aborts with the culprit named; a failure of an OT, multiplication or Γ check is
`ban=True`: the pair's OT state may have leaked bits and must not sign again until a reshare.
There are no published DKLs23 test vectors; the tests check every signature with coincurve and
eth-account and tamper with every field of every message.
"""
