"""writeback_entries (what write-back created) and source_conflicts (what one source
could not write because another holds it)

Entries written back before this revision have no row: write-back no longer touches
them (it cannot tell them from entries others made) and reports each as a conflict
when its resource changes next; an operator deletes the old entry to let it be written anew.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 00:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'writeback_entries',
        sa.Column('ldap_source', sa.String(length=80), nullable=False),
        sa.Column('kind', sa.String(length=8), nullable=False),
        sa.Column('resource_id', sa.String(length=36), nullable=False),
        sa.Column('entry_id', sa.String(length=64), nullable=False),
        sa.Column('dn', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('ldap_source', 'kind', 'resource_id', name=op.f('pk_writeback_entries')),
        sa.UniqueConstraint('ldap_source', 'entry_id', name='uq_writeback_entries_entry'),
    )
    op.create_table(
        'source_conflicts',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('source', sa.String(length=80), nullable=False),
        sa.Column('subject', sa.String(length=256), nullable=False),
        sa.Column('subject_key', sa.String(length=256), nullable=False),
        sa.Column('holder', sa.Text(), nullable=False),
        sa.Column('detail', sa.Text(), nullable=False),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.Column('first_seen', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_seen', sa.DateTime(timezone=True), nullable=False),
        sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_source_conflicts')),
        sa.UniqueConstraint('kind', 'source', 'subject_key', name='uq_source_conflicts_subject'),
    )
    op.create_index('ix_source_conflicts_open', 'source_conflicts', ['resolved_at'])


def downgrade() -> None:
    op.drop_index('ix_source_conflicts_open', table_name='source_conflicts')
    op.drop_table('source_conflicts')
    op.drop_table('writeback_entries')
