"""users.user_name_key and groups.display_name_key as identity keys (bridge.names)

Names that differ only in width, spacing or invisible characters now share a key, so a
second one is refused as taken. Of stored names that share the new key, the one holding it
already (else the oldest) takes it; each other one gets a placeholder key no name can
have (a space and its id: keys are trimmed), is named in a warning, and is shown as a
conflict (migration 0009) until an operator renames it. Until then its name finds the
holder of the key, and it cannot log in.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 23:50:00
"""

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bridge.names import identity_key

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")
PLACEHOLDER = " "  # + the user's id: a key no name has (keys are trimmed), unique as the id is

users = sa.table("users", sa.column("id", sa.String), sa.column("user_name", sa.String),
                 sa.column("user_name_key", sa.String), sa.column("created_at", sa.DateTime))
groups = sa.table("groups", sa.column("id", sa.String), sa.column("display_name", sa.String),
                  sa.column("display_name_key", sa.String), sa.column("source", sa.String),
                  sa.column("created_at", sa.DateTime))


def _old_key(name: str) -> str:
    return name.strip().casefold()


def upgrade() -> None:
    connection = op.get_bind()
    rows = connection.execute(sa.select(users.c.id, users.c.user_name, users.c.user_name_key)
                              .order_by(users.c.created_at, users.c.id)).all()
    by_key: dict[str, list[tuple[str, str, str]]] = {}
    for row in rows:
        by_key.setdefault(identity_key(row.user_name)[:256], []).append(tuple(row))
    changes: list[tuple[str, str]] = []
    for new, holders in by_key.items():
        # the one that holds the key already keeps it; else the oldest takes it
        winner = next((h for h in holders if h[2] == new), holders[0])
        if winner[2] != new:
            changes.append((winner[0], new))
        for user_id, name, key in holders:
            if user_id != winner[0]:
                log.warning("userName %r shares its identity key with %r: rename one of them", name, winner[1])
                if key != PLACEHOLDER + user_id:
                    changes.append((user_id, PLACEHOLDER + user_id))
    # two passes, so that no key is briefly held twice under the unique index (a key with a
    # leading space is no key: every key is trimmed)
    for user_id, _new in changes:
        connection.execute(sa.update(users).where(users.c.id == user_id).values(user_name_key=" rekey " + user_id))
    for user_id, new in changes:
        connection.execute(sa.update(users).where(users.c.id == user_id).values(user_name_key=new))
    for group_id, name, key in connection.execute(sa.select(groups.c.id, groups.c.display_name,
                                                            groups.c.display_name_key)).all():
        if identity_key(name) != key:  # no unique index: group names are unique per source by the service
            connection.execute(sa.update(groups).where(groups.c.id == group_id)
                               .values(display_name_key=identity_key(name)))


def downgrade() -> None:
    connection = op.get_bind()
    for table, id_col, name_col, key_col in ((users, users.c.id, users.c.user_name, users.c.user_name_key),
                                             (groups, groups.c.id, groups.c.display_name,
                                              groups.c.display_name_key)):
        for row_id, name in connection.execute(sa.select(id_col, name_col)).all():
            connection.execute(sa.update(table).where(id_col == row_id).values({key_col.name: _old_key(name)}))
