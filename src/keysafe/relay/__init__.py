"""The relay: how agents on other machines reach the vault without the vault listening publicly.

The vault and each agent's sidecar connect outbound to a relay and address each other by routing
id (a hash of an Ed25519 key). The relay routes opaque, end-to-end encrypted envelopes between
mailboxes and never reads, logs or keeps a body beyond its TTL. routing.py is the wire format,
mailbox.py the store (memory or Redis), server.py the relay's ASGI app and link.py the client both
ends use.
"""
