"""users.attributes: a customer number waiting for its customer moves to its own key

Until now a SCIM user's customerNumber that no customer had yet was kept under the
attribute key ``customerNumber``, where an LDAP attribute mapped by that name would
land too; it now has a key of its own (bridge.services.customers.PENDING_NUMBER).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 07:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD, NEW = "customerNumber", "portal.pendingCustomerNumber"
users = sa.table("users", sa.column("id", sa.String), sa.column("source", sa.String),
                 sa.column("customer_id", sa.String), sa.column("attributes", sa.JSON))


def _move(source: str, target: str, sources: str) -> None:
    connection = op.get_bind()
    rows = connection.execute(sa.select(users.c.id, users.c.attributes).where(
        users.c.customer_id.is_(None), users.c.source.like(sources))).all()
    for user_id, attributes in rows:
        if isinstance(attributes, dict) and attributes.get(source):
            moved = {k: v for k, v in attributes.items() if k != source}
            moved[target] = attributes[source]
            connection.execute(sa.update(users).where(users.c.id == user_id).values(attributes=moved))


def upgrade() -> None:
    _move(OLD, NEW, "scim:%")  # only SCIM clients ever left a pending number


def downgrade() -> None:
    _move(NEW, OLD, "%")
