"""Fee ceilings per chain, budget rows keyed by asset identity, grants bound to a request shape.

Revision ID: 0006
Revises: 0005

- `registry_chains.max_fee`: the most one transaction's network fee may cost on that chain, in
  native units (a decimal string); NULL means the built-in default for the chain's family.
- `ledger.asset` widens: it now holds the asset's identity (chain + contract or mint), not its
  symbol, so two tokens that share a symbol are counted each in its own units.
- `grants.shape` / `grants.summary`: "approve for a while" covers only requests of the shape the
  owner saw (SHA-256 of the shape's canonical JSON), and the listing says what that was.
- `inflight`: one row per agent request between its decision and its settlement, so a restart
  after a crash knows which reservations and idempotency keys were left open, and finishes them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("registry_chains") as batch:
        batch.add_column(sa.Column("max_fee", sa.Text(), nullable=True))
    with op.batch_alter_table("ledger") as batch:
        batch.alter_column("asset", type_=sa.String(200), existing_nullable=True)
    with op.batch_alter_table("grants") as batch:
        batch.add_column(sa.Column("shape", sa.String(64), nullable=True))
        batch.add_column(sa.Column("summary", sa.String(500), nullable=True))
    op.create_table(
        "inflight",
        sa.Column("request_id", sa.String(32), primary_key=True),
        sa.Column("agent", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("started_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("inflight")
    with op.batch_alter_table("grants") as batch:
        batch.drop_column("summary")
        batch.drop_column("shape")
    with op.batch_alter_table("ledger") as batch:
        batch.alter_column("asset", type_=sa.String(32), existing_nullable=True)
    with op.batch_alter_table("registry_chains") as batch:
        batch.drop_column("max_fee")
