"""The key provider that wraps the vault's key (KMS providers, issue 18).

Revision ID: 0010
Revises: 0009

- `vault.kms_kind`: NULL or "local" for the passphrase (Argon2id, unchanged), "openbao" or
  "aws-kms" for a KMS.
- `vault.kms_url`, `vault.kms_key`: where the KMS is and which key wraps this vault's; never a
  token or any credential.
- `vault.kms_blob`: the vault's key-encryption key as the KMS wrapped it. Under a KMS, that key
  wraps `master_wrapped` and `seal_pass_wrapped` in place of the passphrase's Argon2id key.

Existing vaults keep NULLs: they stay passphrase vaults, byte for byte.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_NEW = (
    ("kms_kind", sa.String(32)),
    ("kms_url", sa.Text),
    ("kms_key", sa.Text),
    ("kms_blob", sa.LargeBinary),
)


def upgrade() -> None:
    # As 0009: add only what is missing (a test may set the version row back by hand).
    have = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("vault")}
    missing = [(name, kind) for name, kind in _NEW if name not in have]
    if missing:
        with op.batch_alter_table("vault") as batch:
            for name, kind in missing:
                batch.add_column(sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("vault") as batch:
        for name, _ in reversed(_NEW):
            batch.drop_column(name)
