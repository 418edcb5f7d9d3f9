"""users.access_type_rule, access_type_own and access_type_note: the access type a mapping
rule sets, the user's own value it replaced, and why the rules' answer is not applied

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 06:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('access_type_rule', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('access_type_own', sa.Enum('admin', 'backend', 'api', name='access_type',
                                                                 native_enum=False, length=32), nullable=True))
        batch_op.add_column(sa.Column('access_type_note', sa.Text(), nullable=True))
        batch_op.create_index('ix_users_access_type_rule', ['access_type_rule'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_index('ix_users_access_type_rule')
        batch_op.drop_column('access_type_note')
        batch_op.drop_column('access_type_own')
        batch_op.drop_column('access_type_rule')
