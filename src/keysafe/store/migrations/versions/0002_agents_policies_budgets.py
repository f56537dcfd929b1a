"""Agents, policies, settings, the chain/asset registry, the budget ledger, nonces, idempotency.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# 64-bit on PostgreSQL (its INTEGER is 32-bit; SQLite's is 64): INTEGER on SQLite as before.
INT64 = sa.Integer().with_variant(sa.BigInteger(), "postgresql")


def upgrade() -> None:
    _agents_policies_settings()
    _registry()
    _ledger_nonces_idempotency()


# Three groups of tables, created in the order the first release created them (one function
# was over the 60-line limit); what the migration does is unchanged.


def _agents_policies_settings() -> None:
    op.create_table(
        "agents",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=True, unique=True),
        sa.Column("public_key", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("last_seen", sa.String(40), nullable=True),
        sa.Column("revoked_at", sa.String(40), nullable=True),
    )
    op.create_table(
        "policies",
        sa.Column("agent", sa.String(64), primary_key=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("set_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "settings",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def _registry() -> None:
    op.create_table(
        "registry_chains",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("family", sa.String(16), nullable=False),
        sa.Column("chain_id", INT64, nullable=True),
        sa.Column("rpc", sa.Text, nullable=True),
    )
    op.create_table(
        "registry_assets",
        sa.Column("chain", sa.String(64), primary_key=True),
        sa.Column("symbol", sa.String(32), primary_key=True),
        sa.Column("address", sa.String(100), nullable=True),
        sa.Column("decimals", sa.Integer, nullable=False),
    )


def _ledger_nonces_idempotency() -> None:
    op.create_table(
        "ledger",
        sa.Column("id", INT64, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(32), nullable=False),
        sa.Column("agent", sa.String(64), nullable=False),
        sa.Column("rule", sa.String(100), nullable=False),
        sa.Column("asset", sa.String(32), nullable=True),
        sa.Column("units", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_ledger_request_id", "ledger", ["request_id"])
    op.create_index("ix_ledger_window", "ledger", ["agent", "rule", "at"])
    op.create_table(
        "nonces",
        sa.Column("agent", sa.String(64), primary_key=True),
        sa.Column("nonce", sa.String(128), primary_key=True),
        sa.Column("expires", sa.Float, nullable=False),
    )
    op.create_table(
        "idempotency",
        sa.Column("agent", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("result", sa.Text, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
    )


def downgrade() -> None:
    for name in (
        "idempotency",
        "nonces",
        "ledger",
        "registry_assets",
        "registry_chains",
        "settings",
        "policies",
        "agents",
    ):
        op.drop_table(name)
