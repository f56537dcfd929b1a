"""Running totals of the budget windows.

Revision ID: 0008
Revises: 0007

- `ledger_totals`: per (agent, rule, window) the live units per asset and the live request
  count, kept in the transaction that books or releases a ledger row and moved forward as rows
  leave the window (store/ledger.py). It starts empty: each window is summed from the ledger once,
  the first time it is read, and kept from then on.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# 64-bit on PostgreSQL (its INTEGER is 32-bit; SQLite's is 64): INTEGER on SQLite as before.
INT64 = sa.Integer().with_variant(sa.BigInteger(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "ledger_totals",
        sa.Column("agent", sa.String(64), primary_key=True),
        sa.Column("rule", sa.String(100), primary_key=True),
        sa.Column("window_ms", INT64, primary_key=True),
        sa.Column("asset", sa.String(200), primary_key=True),
        sa.Column("units", sa.Text, nullable=False),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("horizon", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ledger_totals")
