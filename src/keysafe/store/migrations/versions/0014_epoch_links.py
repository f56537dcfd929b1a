"""Epoch links: each new epoch key wrapped under the key of the epoch it succeeded.

Revision ID: 0014
Revises: 0013

- `epochs.sealed_prev`: the epoch key, AEAD-wrapped under a key derived from the previous current
  epoch's key (vault/hierarchy.py `link_epoch_key`), with that epoch's number in front. Another
  server on the same database (PostgreSQL) that holds the old key opens the new one from it, so
  no server needs to keep the passphrase's sealing key in memory (which opens old copies of the
  database). The link opens only forwards: the new key opens nothing older.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    have = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("epochs")}
    if "sealed_prev" not in have:
        with op.batch_alter_table("epochs") as batch:
            batch.add_column(sa.Column("sealed_prev", sa.LargeBinary, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("epochs") as batch:
        batch.drop_column("sealed_prev")
