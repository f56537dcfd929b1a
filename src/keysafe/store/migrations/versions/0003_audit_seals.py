"""Keyed audit seals: a MAC per entry and a sealed checkpoint in the vault header.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# 64-bit on PostgreSQL (its INTEGER is 32-bit; SQLite's is 64): INTEGER on SQLite as before.
INT64 = sa.Integer().with_variant(sa.BigInteger(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("vault") as batch:
        batch.add_column(
            sa.Column("audit_checkpoint_seq", INT64, nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("audit_checkpoint_mac", sa.String(64), nullable=True))
    with op.batch_alter_table("audit") as batch:
        batch.add_column(sa.Column("mac", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit") as batch:
        batch.drop_column("mac")
    with op.batch_alter_table("vault") as batch:
        batch.drop_column("audit_checkpoint_mac")
        batch.drop_column("audit_checkpoint_seq")
