"""Keys at rest: the key check value, the KDF salt, and which key encrypted each migration key.

Which key sealed a migration key is in its ciphertext (``v2:<key id>:...``), so the
migrations table is unchanged; ``key_vault`` holds each key-encryption key's id, KDF, salt,
scrypt cost and check value (current, next during a rotation, retired).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Revisions are frozen history: they spell out their types instead of importing the models'.
UTC_TIME = sa.DateTime(timezone=True)
LIVE = "status <> 'retired'"


def upgrade() -> None:
    op.create_table(
        "key_vault",
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("kdf", sa.String(16), nullable=False),
        sa.Column("salt", sa.Text(), nullable=False),
        sa.Column("scrypt_n", sa.Integer(), nullable=True),
        sa.Column("scrypt_r", sa.Integer(), nullable=True),
        sa.Column("scrypt_p", sa.Integer(), nullable=True),
        sa.Column("check_value", sa.String(64), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("retired_at", UTC_TIME, nullable=True),
        sa.PrimaryKeyConstraint("key_id", name="pk_key_vault"),
    )
    op.create_index(
        "uq_key_vault_status",
        "key_vault",
        ["status"],
        unique=True,
        postgresql_where=sa.text(LIVE),
        sqlite_where=sa.text(LIVE),
    )


def downgrade() -> None:
    op.drop_index("uq_key_vault_status", table_name="key_vault")
    op.drop_table("key_vault")
