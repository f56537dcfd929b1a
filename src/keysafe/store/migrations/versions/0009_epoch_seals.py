"""Epoch keys sealed outside the master key (forward secrecy).

Revision ID: 0009
Revises: 0008

- `vault.seal_pass_pub`, `seal_pass_nonce`, `seal_pass_wrapped`: an X25519 key pair whose private
  half is wrapped by the passphrase's key-encryption key (Argon2id) and opened only while
  unlocking; every epoch key is sealed to its public half.
- `vault.seal_phrase_pub`: the public half of an X25519 key derived from the recovery phrase;
  every epoch key is sealed to it too, so the phrase still opens the vault.
- `epochs.sealed_pass`, `epochs.sealed_phrase`: those two sealed copies (HPKE). A vault written
  before this keeps its master-wrapped epoch keys (`nonce`, `wrapped_key`) until the recovery
  phrase has been used once (`keysafe recover`), which sets the phrase's public key.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


_NEW = {
    "vault": ("seal_pass_pub", "seal_pass_nonce", "seal_pass_wrapped", "seal_phrase_pub"),
    "epochs": ("sealed_pass", "sealed_phrase"),
}


def upgrade() -> None:
    # Columns already there are kept (a file whose version row was set back by hand, as a test
    # of an older schema does): the migration adds what is missing and nothing else.
    inspector = sa.inspect(op.get_bind())
    for table, columns in _NEW.items():
        have = {c["name"] for c in inspector.get_columns(table)}
        missing = [c for c in columns if c not in have]
        if missing:
            with op.batch_alter_table(table) as batch:
                for name in missing:
                    batch.add_column(sa.Column(name, sa.LargeBinary, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("epochs") as batch:
        batch.drop_column("sealed_phrase")
        batch.drop_column("sealed_pass")
    with op.batch_alter_table("vault") as batch:
        batch.drop_column("seal_phrase_pub")
        batch.drop_column("seal_pass_wrapped")
        batch.drop_column("seal_pass_nonce")
        batch.drop_column("seal_pass_pub")
