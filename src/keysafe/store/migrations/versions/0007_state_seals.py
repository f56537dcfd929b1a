"""Seals on the rows that decide what an agent may do.

Revision ID: 0007
Revises: 0006

- `agents.mac`, `policies.mac`, `settings.mac`: an HMAC-SHA256 under a subkey of the master key
  over the row's decisive columns (vault/seals.py). Rows from before this revision have none;
  the service honours an unsealed row only when it restricts, until the owner reviews and seals
  it (`keysafe agent seal`).
- The pause-all switch gets a row of its own even when off ("0", unsealed until reviewed), so
  that from then on deleting the row is detectable rather than a way to switch pause-all off.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("agents", "policies", "settings"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("mac", sa.String(64), nullable=True))
    op.execute(
        "INSERT INTO settings (key, value) SELECT 'paused_all', '0' "
        "WHERE NOT EXISTS (SELECT 1 FROM settings WHERE key = 'paused_all')"
    )


def downgrade() -> None:
    op.execute("DELETE FROM settings WHERE key = 'paused_all' AND value = '0'")
    for table in ("settings", "policies", "agents"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("mac")
