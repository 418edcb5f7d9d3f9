"""writeback_entries (what write-back created) and source_conflicts (what one source
could not write because another holds it)

Entries written back before this revision have no row: write-back no longer touches
them (it cannot tell them from entries others made) and reports each as a conflict
when its resource changes next; an operator deletes the old entry to let it be written anew.

The users migration 0008 could not give their identity key (it was another user's
already) are recorded as open conflicts, for an operator to rename one of the two.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 00:05:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from bridge.names import identity_key

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
    _record_placeholders()


def _record_placeholders() -> None:
    users = sa.table("users", sa.column("id", sa.String), sa.column("user_name", sa.String),
                     sa.column("user_name_key", sa.String), sa.column("source", sa.String))
    conflicts = sa.table("source_conflicts", *(sa.column(c) for c in (
        "kind", "source", "subject", "subject_key", "holder", "detail", "count", "first_seen", "last_seen")))
    connection = op.get_bind()
    now = datetime.now(UTC)
    seen: set[tuple[str, str]] = set()
    for user_id, name, source in connection.execute(sa.select(users.c.id, users.c.user_name, users.c.source)
                                                    .where(users.c.user_name_key == " " + users.c.id)).all():
        key = identity_key(name)[:256]
        holder = connection.execute(sa.select(users.c.user_name, users.c.source)
                                    .where(users.c.user_name_key == key)).first()
        if (source, key) in seen or holder is None:
            continue
        seen.add((source, key))
        connection.execute(sa.insert(conflicts).values(
            kind="user_name", source=source, subject=name, subject_key=key, holder=holder.source,
            detail=(f"userName {name!r} (user {user_id}) was stored before names had identity keys and shares "
                    f"its key with {holder.user_name!r} of {holder.source}: rename one of them; until then "
                    f"{name!r} finds {holder.user_name!r} and cannot log in"),
            count=1, first_seen=now, last_seen=now))

def downgrade() -> None:
    op.drop_index('ix_source_conflicts_open', table_name='source_conflicts')
    op.drop_table('source_conflicts')
    op.drop_table('writeback_entries')
