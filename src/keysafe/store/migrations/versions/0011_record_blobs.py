"""Record ciphertext in an object store (S3), with a pointer and a hash in the row.

Revision ID: 0011
Revises: 0010

- `vault.blobs`: where record ciphertext lives, as canonical JSON (`{"kind": "s3", "bucket",
  "prefix", "endpoint"}`); NULL (every vault before this, and every vault made without
  `--blobs`): in the `records` row, exactly as before.
- `records.blob_key`, `records.blob_version`, `records.blob_sha256`: for a record whose
  ciphertext is an object, its key, its version id (NULL where the bucket keeps no versions) and
  the SHA-256 of its bytes (hex), checked before anything is decrypted. Such a row keeps
  `nonce` and `ciphertext` empty; its wrapped data key stays in the row.

The columns are nullable and stay NULL for the default store, so a vault that does not use S3
reads and writes the same rows as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


_NEW: dict[str, tuple[tuple[str, sa.types.TypeEngine[str]], ...]] = {
    "vault": (("blobs", sa.Text()),),
    "records": (
        ("blob_key", sa.String(1024)),
        ("blob_version", sa.String(1024)),
        ("blob_sha256", sa.String(64)),
    ),
}


def upgrade() -> None:
    # As in 0009: columns already there are kept (a file whose version row was set back by hand).
    inspector = sa.inspect(op.get_bind())
    for table, columns in _NEW.items():
        have = {c["name"] for c in inspector.get_columns(table)}
        missing = [(name, kind) for name, kind in columns if name not in have]
        if missing:
            with op.batch_alter_table(table) as batch:
                for name, kind in missing:
                    batch.add_column(sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("records") as batch:
        batch.drop_column("blob_sha256")
        batch.drop_column("blob_version")
        batch.drop_column("blob_key")
    with op.batch_alter_table("vault") as batch:
        batch.drop_column("blobs")
