"""Applying the config's scopes, roles and portal groups to the store, on every start.

Idempotent: it writes (and audits, and bumps the authorization generation) only
what differs. What the config declares wins: a role or node of the same name
edited through the API is set back and becomes the config's. Something the
config no longer declares is kept and handed over to the API (deleting it would
silently drop its grants).
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from bridge.config import Config
from bridge.names import identity_key
from bridge.services import Actor, Services
from bridge.services.roles import CONFIG
from bridge.services.unit import UnitOfWork
from bridge.store import migrate
from bridge.store.models import Group, Role, ScopeNode

log = logging.getLogger("bridge.mapping")
ACTOR = Actor(name="config", channel="startup")
# Rights the product itself checks: they exist in every store, so they can be given
# to users and put in roles like any other.
OPERATE_RIGHT = "dirbridge.operate"
BUILTIN_RIGHTS = {OPERATE_RIGHT: "log in to the status page; call the admin API with that session"}


def apply_config(services: Services, config: Config) -> bool:
    """Make the store hold the config's scope tree, roles and portal groups. Returns False
    (and logs why) when the database is unreachable or its schema behind: the first
    check applies it then (see bridge.mapping.engine.authorizer)."""
    try:
        ready = migrate.is_up_to_date(services.store.engine)
    except SQLAlchemyError as exc:
        log.warning("config roles and scopes not applied yet: database unreachable (%s)", type(exc).__name__)
        return False
    if not ready:
        log.warning("config roles and scopes not applied yet: the schema is behind the code")
        return False
    for attempt in (1, 2):  # two replicas starting at once: the loser retries and finds it done
        try:
            with services.unit(ACTOR) as uow:
                _apply(uow, config)
            break
        except IntegrityError:
            if attempt == 2:
                raise
    _warn_about_rules(services, config)
    return True


def _apply(uow: UnitOfWork, config: Config) -> None:
    uow.scopes.ensure_root()
    for right, description in BUILTIN_RIGHTS.items():
        uow.roles.ensure_right(right, description)
    declared_nodes = set()
    for node in config.scopes.nodes:
        declared_nodes.add(node.id)
        existing = uow.session.get(ScopeNode, node.id)
        name = node.name or node.id.split(":", 1)[1]
        if existing is None:
            uow.scopes.create(node.id, node.parent, name, origin=CONFIG)
        else:
            uow.scopes.update(existing, name=name, parent=node.parent, origin=CONFIG, from_config=True)
    for stale in uow.session.scalars(select(ScopeNode).where(ScopeNode.origin == CONFIG)):
        if stale.id not in declared_nodes:
            uow.scopes.update(stale, origin="api", from_config=True)

    declared_roles = {role.name for role in config.roles}
    for role in config.roles:  # all first, so that includes find each other
        known = uow.session.scalar(select(Role).where(Role.name == role.name))
        if known is None:
            uow.roles.create(role.name, description=role.description, rights=role.rights, origin=CONFIG)
        else:
            uow.roles.set_origin(known, CONFIG)
    for role in config.roles:
        uow.roles.update(uow.roles.get(role.name), description=role.description, rights=role.rights,
                         includes=role.includes, from_config=True)
    for unused in uow.session.scalars(select(Role).where(Role.origin == CONFIG)):
        if unused.name not in declared_roles:
            uow.roles.set_origin(unused, "api")

    customers = config.customers
    for name in (customers.remote_users_group, customers.remote_admins_group):
        uow.customers.portal_group(name)
    if customers.sales_group:
        exists = uow.session.scalar(select(Group.id).where(
            Group.display_name_key == identity_key(customers.sales_group)).limit(1))
        if exists is None:
            uow.customers.portal_group(customers.sales_group)
    for problem in uow.customers.rename_rights_groups():  # the name pattern may have changed
        log.warning("%s", problem)
    uow.access.settle_all()  # the access-type rules may have changed with the file


def _warn_about_rules(services: Services, config: Config) -> None:
    with services.store.read() as session:
        roles = set(session.scalars(select(Role.name)))
        nodes = set(session.scalars(select(ScopeNode.id)))
    for index, rule in enumerate(config.mapping.rules, start=1):
        if rule.role is not None and rule.role not in roles:
            log.warning("mapping rule #%d names role %r, which does not exist: it grants nothing", index, rule.role)
        if rule.role is not None and "{" not in rule.scope and rule.scope not in nodes:
            log.warning("mapping rule #%d names scope node %r, which does not exist: it grants nothing",
                        index, rule.scope)
