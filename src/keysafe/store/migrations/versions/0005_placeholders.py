"""Credential placeholders: opaque `ksp_…` stand-ins an agent's unmodified SDK carries as its key.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "placeholders",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("agent", sa.String(64), nullable=False),
        sa.Column("credential", sa.String(64), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_index("ix_placeholders_agent", "placeholders", ["agent"])


def downgrade() -> None:
    op.drop_table("placeholders")
