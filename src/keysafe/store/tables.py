"""The SQL schema (SQLAlchemy Core). Alembic migrations in `migrations/` create and evolve it.

Nothing secret is stored in plaintext here: `records` holds ciphertext and wrapped data keys,
`vault` holds the master key wrapped under the passphrase, `epochs` the epoch keys wrapped under
the master key. `meta` columns hold public facts (hosts, addresses) that are also bound into the
record's AEAD associated data, so editing them is detected when the record is opened. The rows
that decide what an agent may do (`agents`, `policies`, `settings`) carry a `mac`: a seal under
the owner's key (vault/seals.py), checked on every read that decides.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import TypeCompiler

# SQLite's INTEGER holds 64 bits; PostgreSQL's holds 32. These columns can pass 2**31 (a 30-day
# window is 2.6e9 ms; chain ids such as 11297108109 exist; the audit sequence and ledger ids
# grow for ever), so on PostgreSQL they are BIGINT. On SQLite the DDL stays INTEGER as before.
Int64 = Integer().with_variant(BigInteger(), "postgresql")


@compiles(String, "postgresql")
def _unbounded_varchar(element: String, compiler: TypeCompiler, **kw: Any) -> str:
    """String(n) is VARCHAR without a length on PostgreSQL. SQLite never enforced the lengths,
    so a value keysafe writes there (an audit target naming a long URL, say) would fail on
    PostgreSQL: an audit entry that cannot be written stops the action (fail closed), which
    would turn a harmless long name into a refusal on one backend only. The lengths stay in the
    schema as documentation; validation happens in the models."""
    return "VARCHAR"


metadata = MetaData()

vault = Table(
    "vault",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("format", Integer, nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("kdf_params", Text, nullable=False),  # JSON: Argon2id cost
    Column("kdf_salt", LargeBinary, nullable=False),
    Column("master_nonce", LargeBinary, nullable=False),
    Column("master_wrapped", LargeBinary, nullable=False),
    Column("unlock_failures", Integer, nullable=False, default=0),
    Column("unlock_blocked_until", Float, nullable=False, default=0.0),
    # The newest audit entry, written in the same transaction as the entry: a truncated tail is
    # then detectable even though the chain itself only links backwards.
    Column("audit_head_seq", Int64, nullable=False, default=0),
    Column("audit_head_hash", String(64), nullable=False),
    # The newest entry sealed with the owner's audit key (schema 0003): rewriting history up to
    # here is detectable by the owner even if the whole chain and head were recomputed.
    Column("audit_checkpoint_seq", Int64, nullable=False, default=0),
    Column("audit_checkpoint_mac", String(64), nullable=True),
    # Epoch keys are sealed to these (schema 0009), not wrapped by the master key: an old copy
    # of the file and the current master key open nothing (vault/hierarchy.py).
    Column("seal_pass_pub", LargeBinary, nullable=True),
    Column("seal_pass_nonce", LargeBinary, nullable=True),
    Column("seal_pass_wrapped", LargeBinary, nullable=True),
    Column("seal_phrase_pub", LargeBinary, nullable=True),
    # The key provider (schema 0010, vault/kms/): NULL kind is the passphrase ("local"). A KMS
    # wraps a random key-encryption key (kms_blob) that takes the Argon2id key's place for
    # master_wrapped and seal_pass_wrapped. Where and which key, never a token.
    Column("kms_kind", String(32), nullable=True),
    Column("kms_url", Text, nullable=True),
    Column("kms_key", Text, nullable=True),
    Column("kms_blob", LargeBinary, nullable=True),
    # Where record ciphertext lives (schema 0011): canonical JSON of the blob store's settings
    # (vault/blobs.py), never a credential; NULL: in the `records` rows, as always.
    Column("blobs", Text, nullable=True),
)

epochs = Table(
    "epochs",
    metadata,
    Column("number", Integer, primary_key=True),
    Column("state", String(16), nullable=False),  # active | retired
    Column("created_at", String(40), nullable=False),
    Column("nonce", LargeBinary, nullable=False),  # legacy: empty once sealed (schema 0009)
    Column("wrapped_key", LargeBinary, nullable=False),  # legacy: by the master key, or empty
    Column("sealed_pass", LargeBinary, nullable=True),  # HPKE to vault.seal_pass_pub
    Column("sealed_phrase", LargeBinary, nullable=True),  # HPKE to vault.seal_phrase_pub
    # Wrapped under the previous current epoch's key (schema 0014), for other servers.
    Column("sealed_prev", LargeBinary, nullable=True),
)

records = Table(
    "records",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("kind", String(32), nullable=False),  # credential | data | wallet | hd_seed
    Column("name", String(200), nullable=False),
    Column("data_class", String(16), nullable=False),  # standard | sensitive | critical
    Column("epoch", Integer, nullable=False),
    Column("version", Integer, nullable=False),
    Column("meta", Text, nullable=False),  # canonical JSON of public facts
    Column("dek_nonce", LargeBinary, nullable=False),
    Column("dek_wrapped", LargeBinary, nullable=False),
    Column("nonce", LargeBinary, nullable=False),
    Column("ciphertext", LargeBinary, nullable=False),  # empty when it is an object (blob_key)
    Column("created_at", String(40), nullable=False),
    Column("updated_at", String(40), nullable=False),
    # The ciphertext as an object in S3 (schema 0011): its key, version id (NULL in a bucket
    # without versions) and SHA-256 (hex), checked before decrypting. NULL: in this row.
    Column("blob_key", String(1024), nullable=True),
    Column("blob_version", String(1024), nullable=True),
    Column("blob_sha256", String(64), nullable=True),
    UniqueConstraint("kind", "name", name="uq_records_kind_name"),
)

audit = Table(
    "audit",
    metadata,
    Column("seq", Int64, primary_key=True, autoincrement=False),
    Column("time", String(40), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(100), nullable=False),
    Column("target", String(300), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("details", Text, nullable=False),  # canonical JSON, redacted (audit/redact.py)
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("mac", String(64), nullable=True),  # HMAC seal under the audit key (schema 0003)
)

# -- agents, policies, budgets (schema 0002) ------------------------------------------------

agents = Table(
    "agents",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("token_hash", String(64), nullable=True, unique=True),  # SHA-256 hex of the token
    Column("public_key", String(64), nullable=True),  # Ed25519, hex, for signed requests
    Column("status", String(16), nullable=False),  # active | paused | revoked
    Column("created_at", String(40), nullable=False),
    Column("last_seen", String(40), nullable=True),
    Column("revoked_at", String(40), nullable=True),
    Column("mac", String(64), nullable=True),  # seal under the owner's key (schema 0007)
)

policies = Table(
    "policies",
    metadata,
    Column("agent", String(64), primary_key=True),
    Column("source", Text, nullable=False),  # the YAML as the owner wrote it
    Column("digest", String(64), nullable=False),
    Column("set_at", String(40), nullable=False),
    Column("mac", String(64), nullable=True),  # seal under the owner's key (schema 0007)
)

settings = Table(
    "settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("mac", String(64), nullable=True),  # seal under the owner's key (schema 0007)
)

registry_chains = Table(
    "registry_chains",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("family", String(16), nullable=False),
    Column("chain_id", Int64, nullable=True),
    Column("rpc", Text, nullable=True),
    Column("max_fee", Text, nullable=True),  # native units, decimal string (schema 0006)
)

registry_assets = Table(
    "registry_assets",
    metadata,
    Column("chain", String(64), primary_key=True),
    Column("symbol", String(32), primary_key=True),
    Column("address", String(100), nullable=True),
    Column("decimals", Integer, nullable=False),
)

# One row per (action, rule with limits). Amounts are integer base units as text: they can exceed
# 64 bits, and they are summed exactly in Python.
ledger = Table(
    "ledger",
    metadata,
    Column("id", Int64, primary_key=True, autoincrement=True),
    Column("request_id", String(32), nullable=False, index=True),
    Column("agent", String(64), nullable=False),
    Column("rule", String(100), nullable=False),
    Column("asset", String(200), nullable=True),  # asset identity: chain + contract/mint (0006)
    Column("units", Text, nullable=False),
    Column("state", String(16), nullable=False),  # reserved | committed | released
    Column("at", Float, nullable=False),  # unix seconds
    Index("ix_ledger_window", "agent", "rule", "at"),
)

# Running window totals, derived from `ledger` so a budget check costs the same after a million
# signatures as after one (0008). One marker row per (agent, rule, window) with asset "" holds the
# live request count and `horizon`: ledger rows booked before it have been taken out of every
# total of that window. Asset rows hold live base units per asset identity, as text (exact, may
# exceed 64 bits). Rows appear the first time a window is read and can be dropped at any time:
# they are rebuilt from the ledger.
ledger_totals = Table(
    "ledger_totals",
    metadata,
    Column("agent", String(64), primary_key=True),
    Column("rule", String(100), primary_key=True),
    Column("window_ms", Int64, primary_key=True),
    Column("asset", String(200), primary_key=True),  # "" for the window's marker row
    Column("units", Text, nullable=False),
    Column("requests", Integer, nullable=False),
    Column("horizon", Float, nullable=False),  # unix seconds; meaningful on the marker row
)

nonces = Table(
    "nonces",
    metadata,
    Column("agent", String(64), primary_key=True),
    Column("nonce", String(128), primary_key=True),
    Column("expires", Float, nullable=False),
)

idempotency = Table(
    "idempotency",
    metadata,
    Column("agent", String(64), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("result", Text, nullable=False),
    Column("created_at", String(40), nullable=False),
)

# Requests between their decision and their settlement (schema 0006): what a restart after a
# crash must finish (release or keep the reservation, free the idempotency key).
inflight = Table(
    "inflight",
    metadata,
    Column("request_id", String(32), primary_key=True),
    Column("agent", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("idempotency_key", String(200), nullable=True),
    Column("started_at", Float, nullable=False),
)

# -- approvals (schema 0004) ------------------------------------------------------------------

approvals = Table(
    "approvals",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("agent", String(64), nullable=False, index=True),
    Column("kind", String(32), nullable=False),  # sign_transaction | send_transaction | …
    Column("request", Text, nullable=False),  # the exact parked request (canonical JSON)
    Column("fingerprint", String(64), nullable=False),
    Column("summary", String(500), nullable=False),
    Column("rule", String(100), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("status", String(16), nullable=False),  # pending | approved | denied | expired | failed
    Column("decided_at", Float, nullable=True),
    Column("result", Text, nullable=True),  # what the original call returns, once executed
)

grants = Table(
    "grants",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("agent", String(64), nullable=False, index=True),
    Column("rule", String(100), nullable=False),
    Column("action", String(64), nullable=False),
    Column("until", Float, nullable=False),
    Column("approval_id", String(32), nullable=False),
    Column("shape", String(64), nullable=True),  # SHA-256 of the request shape (schema 0006)
    Column("summary", String(500), nullable=True),
)

placeholders = Table(
    "placeholders",
    metadata,
    Column("token_hash", String(64), primary_key=True),  # SHA-256 hex of the `ksp_…` token
    Column("agent", String(64), nullable=False, index=True),  # the only agent it works for
    Column("credential", String(64), nullable=False),  # the only credential it stands for
    Column("created_at", String(40), nullable=False),
)

# -- notifications (schema 0013) ----------------------------------------------------------------

# The outbox: one row per (event, channel), enqueued in the event's own transaction. `notice` is
# the privacy-safe text model (notify/notice.py), never a secret. States: queued → sent, or dead
# after the last try. `claimed_until` is the sender's lease: a row claimed by a sender that died
# is sent again after it, with the same `delivery_id`.
notify_queue = Table(
    "notify_queue",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("delivery_id", String(40), nullable=False, unique=True),
    Column("channel", String(64), nullable=False),  # the channel record's name
    Column("event", String(32), nullable=False),
    Column("notice", Text, nullable=False),  # JSON of notify.notice.Notice
    Column("state", String(16), nullable=False),  # queued | sent | dead
    Column("attempts", Integer, nullable=False),
    Column("next_at", Float, nullable=False),  # unix seconds: not sent before
    Column("claimed_until", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("sent_at", Float, nullable=True),
    Index("ix_notify_queue_due", "state", "next_at"),
)

# Telegram's Approve / Deny buttons: the nonce travels in the button, only its hash is kept.
notify_buttons = Table(
    "notify_buttons",
    metadata,
    Column("nonce_hash", String(64), primary_key=True),
    Column("approval_id", String(32), nullable=False),
    Column("digest", String(64), nullable=False),  # id + fingerprint + request the owner saw
    Column("action", String(16), nullable=False),  # approve | deny
    Column("created_at", Float, nullable=False),
    Column("used_at", Float, nullable=True),
    Index("ix_notify_buttons_approval", "approval_id"),
)
