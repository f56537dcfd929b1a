"""Notifications: the outbox the server sends from, and Telegram's one-time buttons.

Revision ID: 0013
Revises: 0011

- `notify_queue`: one row per (event, channel), written in the transaction of the event, holding
  only the privacy-safe notice (notify/notice.py). The server claims rows under a write
  transaction with a lease, sends, and marks them sent; a send a crash cuts is sent again with the
  same `delivery_id`, which receivers dedupe on.
- `notify_buttons`: SHA-256 of each Approve / Deny button's nonce, bound to one approval and a
  digest of the request the owner was shown; used once.

Channels themselves (webhook URL and signing secret, Telegram bot token and chat) are sealed
records of kind `notify`, so no new table holds them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Tables already there are kept (a file whose version row was set back by hand, as a test
    # of an older schema does): the migration adds what is missing and nothing else.
    have = set(sa.inspect(op.get_bind()).get_table_names())
    if "notify_queue" not in have:
        _queue()
    if "notify_buttons" not in have:
        _buttons()


def _queue() -> None:
    op.create_table(
        "notify_queue",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("delivery_id", sa.String(40), nullable=False, unique=True),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("notice", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_at", sa.Float, nullable=False),
        sa.Column("claimed_until", sa.Float, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("sent_at", sa.Float, nullable=True),
    )
    op.create_index("ix_notify_queue_due", "notify_queue", ["state", "next_at"])


def _buttons() -> None:
    op.create_table(
        "notify_buttons",
        sa.Column("nonce_hash", sa.String(64), primary_key=True),
        sa.Column("approval_id", sa.String(32), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("used_at", sa.Float, nullable=True),
    )
    op.create_index("ix_notify_buttons_approval", "notify_buttons", ["approval_id"])


def downgrade() -> None:
    op.drop_table("notify_buttons")
    op.drop_table("notify_queue")
