"""users.password_hash and password_history.password_hash hold 1024 characters: hashes
imported from other systems (389-DS's {PBKDF2_SHA256} is 447) besides dirbridge's argon2id

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 04:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = (("users", True), ("password_history", False))


def upgrade() -> None:
    for table, nullable in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column('password_hash', existing_type=sa.String(length=255), type_=sa.String(length=1024),
                                  existing_nullable=nullable)


def downgrade() -> None:
    for table, nullable in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column('password_hash', existing_type=sa.String(length=1024), type_=sa.String(length=255),
                                  existing_nullable=nullable)
