"""The foundation schema: vault header, epochs, encrypted records, audit chain.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# 64-bit on PostgreSQL (its INTEGER is 32-bit; SQLite's is 64): INTEGER on SQLite as before.
INT64 = sa.Integer().with_variant(sa.BigInteger(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "vault",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("format", sa.Integer, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("kdf_params", sa.Text, nullable=False),
        sa.Column("kdf_salt", sa.LargeBinary, nullable=False),
        sa.Column("master_nonce", sa.LargeBinary, nullable=False),
        sa.Column("master_wrapped", sa.LargeBinary, nullable=False),
        sa.Column("unlock_failures", sa.Integer, nullable=False),
        sa.Column("unlock_blocked_until", sa.Float, nullable=False),
        sa.Column("audit_head_seq", INT64, nullable=False),
        sa.Column("audit_head_hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "epochs",
        sa.Column("number", sa.Integer, primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("nonce", sa.LargeBinary, nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "records",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("data_class", sa.String(16), nullable=False),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("meta", sa.Text, nullable=False),
        sa.Column("dek_nonce", sa.LargeBinary, nullable=False),
        sa.Column("dek_wrapped", sa.LargeBinary, nullable=False),
        sa.Column("nonce", sa.LargeBinary, nullable=False),
        sa.Column("ciphertext", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("updated_at", sa.String(40), nullable=False),
        sa.UniqueConstraint("kind", "name", name="uq_records_kind_name"),
    )
    op.create_table(
        "audit",
        sa.Column("seq", INT64, primary_key=True, autoincrement=False),
        sa.Column("time", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("target", sa.String(300), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    for name in ("audit", "records", "epochs", "vault"):
        op.drop_table(name)
