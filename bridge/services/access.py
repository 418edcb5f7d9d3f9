"""The access type the mapping rules give (``access_type = "admin"`` on a group), written
to the users a unit of work touched, just before it commits.

Role rules need no write: check evaluates them. An access type is a stored field that
logins, the last-admin rule and every replica read, so it is settled where every
source's writes end (Services.unit): a sync, a SCIM change or an API change of a
membership, a group's name or a user's attributes settles the users it concerns; the
start (bridge.mapping.apply) settles everyone, so an edited rule file holds from then.

The rule owns the value it set: the user's own value (the source's or the operator's)
is kept in ``access_type_own`` and comes back when no rule applies any more. What the
rules say is not applied, and the reason kept (``access_type_note``, explain) and
audited once, when the user's source may not hold admins or the user is the last
active admin.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, cast

from sqlalchemy import ColumnElement, Table, and_, or_, select

from bridge.config import admins_hint
from bridge.mapping.access import AccessDecision, AccessMatch, GroupRef, attribute_matches, decide, group_matches
from bridge.mapping.rules import CompiledRules, compiled_rules, rule_text
from bridge.services import audit
from bridge.services.customers import rule_attributes
from bridge.services.errors import LastAdmin
from bridge.services.users import snapshot
from bridge.store.among import in_chunks
from bridge.store.models import AccessType, Group, GroupGroupMember, GroupUserMember, User
from bridge.store.prepared import session_rows

if TYPE_CHECKING:
    from bridge.services.unit import UnitOfWork


_USERS = cast(Table, User.__table__)


def _rule_set() -> ColumnElement[bool]:
    """``access_type_rule IS NOT NULL`` as SQLite finds it by its index: its planner reads the
    whole table for IS NOT NULL (every user, on every write settled) but searches the index
    for a range, and every value of the column (a 32-bit INTEGER; a rule's number, from 1)
    is at least the smallest 32-bit one."""
    return _USERS.c.access_type_rule >= -(2**31)


# a demotion the last admin held up is tried again with any change (admins are few: indexed)
_held_up = and_(_USERS.c.access_type == AccessType.admin, _USERS.c.access_type_note.is_not(None))
# (Core, on the table: asked by every unit that wrote, without the ORM's compile step)
_HELD_UP = select(_USERS.c.id).where(_held_up)
# and, with no access-type rule, what a rule left behind: one statement, each term found by its index
_RULE_SET_OR_HELD_UP = select(_USERS.c.id).where(or_(_rule_set(), _held_up))


class AccessService:
    def __init__(self, uow: UnitOfWork):
        self.uow = uow
        self._touched: set[str] = set()

    def touch(self, user_ids: Iterable[str]) -> None:
        """Settle these users too (members of a group being deleted: no mark finds them after)."""
        self._touched.update(user_ids)

    def settle(self) -> None:
        """Settle the users this unit marked for the check caches, directly or through a group."""
        users, groups = self.uow.changes.marked()
        touched, self._touched = self._touched, set()
        if not (users or groups or touched):
            return
        rules = compiled_rules(self.uow.config.mapping)
        session = self.uow.session
        if rules.access_rules:
            ids = users | touched | self._members_below(groups)
            ids |= {row[0] for row in session_rows(session, _HELD_UP, {})}
        else:  # no rules (any more): only what one left behind, which the start normally reverted
            ids = {row[0] for row in session_rows(session, _RULE_SET_OR_HELD_UP, {})}
        if ids:
            self._settle(rules, ids)

    def settle_all(self) -> None:
        """Settle every user a rule can concern: at start, when the rules may have changed."""
        rules = compiled_rules(self.uow.config.mapping)
        query = select(User.id)
        if not rules.access_rules:
            query = query.where(_rule_set())
        self._settle(rules, set(self.uow.session.scalars(query)))

    # -- what the rules say --------------------------------------------------------

    def _settle(self, rules: CompiledRules, ids: set[str]) -> None:
        granting = self._granting_groups(rules) if rules.access_rules else {}
        session = self.uow.session
        decided: list[tuple[User, AccessDecision]] = []
        for chunk in in_chunks(sorted(ids)):
            found: dict[str, list[AccessMatch]] = defaultdict(list)
            if granting:
                for uid, gid in session.execute(select(GroupUserMember.user_id, GroupUserMember.group_id).where(
                        GroupUserMember.user_id.in_(chunk), GroupUserMember.group_id.in_(list(granting)))):
                    found[uid].extend(granting[gid])
            for user in session.scalars(select(User).where(User.id.in_(chunk)).order_by(User.id)):
                state = {k: getattr(user, k) for k in ("user_name", "display_name", "given_name", "family_name",
                                                       "email", "external_id", "attributes")}
                matches = found[user.id] + attribute_matches(rules, user.source, rule_attributes(state))
                decided.append((user, decide(matches, self.uow.config.may_hold_admins(user.source))))
        # today's admins last: the last admin's demotion can go through when the same change made another
        decided.sort(key=lambda pair: pair[0].access_type == AccessType.admin)
        for user, decision in decided:
            self._apply(user, decision)

    def _granting_groups(self, rules: CompiledRules) -> dict[str, list[AccessMatch]]:
        """Each group whose members an access-type rule reaches: the groups a rule matches and
        every group nested in them (nested members count, as for role rules)."""
        session = self.uow.session
        direct = {}
        for gid, source, name, dn in session.execute(
                select(Group.id, Group.source, Group.display_name, Group.ldap_dn)):
            matched = group_matches(rules, GroupRef(source, name, dn))
            if matched:
                direct[gid] = matched
        if not direct:
            return {}
        children: dict[str, list[str]] = defaultdict(list)
        for parent, child in session.execute(select(GroupGroupMember.group_id, GroupGroupMember.child_group_id)):
            children[parent].append(child)
        out: dict[str, set[AccessMatch]] = defaultdict(set)
        for gid, matched in direct.items():
            pending, seen = [gid], set()
            while pending:
                current = pending.pop()
                if current not in seen:
                    seen.add(current)
                    out[current].update(matched)
                    pending.extend(children[current])
        return {gid: sorted(m, key=lambda x: x.index) for gid, m in out.items()}

    def _members_below(self, group_ids: set[str]) -> set[str]:
        """The users in these groups or in any group nested in them."""
        if not group_ids:
            return set()
        session, seen, frontier = self.uow.session, set(group_ids), set(group_ids)
        while frontier:
            below: set[str] = set()
            for chunk in in_chunks(sorted(frontier)):
                below.update(session.scalars(select(GroupGroupMember.child_group_id)
                                             .where(GroupGroupMember.group_id.in_(chunk))))
            frontier = below - seen
            seen |= frontier
        users: set[str] = set()
        for chunk in in_chunks(sorted(seen)):
            users.update(session.scalars(select(GroupUserMember.user_id).where(GroupUserMember.group_id.in_(chunk))))
        return users

    # -- writing it ----------------------------------------------------------------

    def _apply(self, user: User, decision: AccessDecision) -> None:
        own = user.access_type_own if user.access_type_rule is not None else user.access_type
        if decision.access_type is None:
            target, rule, kept = own or AccessType.backend, None, None
        else:
            target, rule, kept = AccessType(decision.access_type), decision.rule, own
        note = self._refused_admin(user, decision.refused)
        if target != user.access_type:
            try:
                self.uow.users.guard_last_admin(user, {"access_type": target})
            except LastAdmin:
                why = (f"{rule_text(self.uow.config.mapping, rule)} makes it {target}" if rule
                       else "no mapping rule makes it admin any more")
                note = (f"{user.user_name!r} stays admin, the last active one, though {why}; "
                        "make another user admin first")
                target, rule, kept = user.access_type, user.access_type_rule, user.access_type_own
        if note is not None and note != user.access_type_note:
            self.uow.refuse("access_type", note, "user", user.id, user.user_name)  # audited after the unit
        wanted = {"access_type": target, "access_type_rule": rule, "access_type_own": kept, "access_type_note": note}
        if all(getattr(user, key) == value for key, value in wanted.items()):
            return
        before = snapshot(user)
        for key, value in wanted.items():
            setattr(user, key, value)
        user.updated_at = self.uow.now()
        changes = audit.diff(before, snapshot(user))
        if changes:
            audit.record(self.uow.session, self.uow.actor, "user.access-type", "user", user.id, user.user_name,
                         changes)
        self.uow.changes.user(user.id)  # check answers and explain follow

    def _refused_admin(self, user: User, refused: AccessMatch | None) -> str | None:
        if refused is None:
            return None
        return (f"{rule_text(self.uow.config.mapping, refused.index)} would make {user.user_name!r} an admin, "
                f"but users of {user.source} may not be admins ({admins_hint(user.source)})")
