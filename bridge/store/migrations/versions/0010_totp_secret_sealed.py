"""totp_credentials.secret holds a sealed secret (bridge.accounts.vault): 512 characters

Secrets stored in clear stay as they are here (the key lives in the config, not the
database); ``dirbridge serve`` seals them at its next start (``dirbridge totp reseal``).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 00:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('totp_credentials', schema=None) as batch_op:
        batch_op.alter_column('secret', existing_type=sa.String(length=128), type_=sa.String(length=512),
                              existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('totp_credentials', schema=None) as batch_op:
        batch_op.alter_column('secret', existing_type=sa.String(length=512), type_=sa.String(length=128),
                              existing_nullable=False)
