"""The service layer's invariants, on SQLite and on PostgreSQL: they hold whoever writes."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from bridge.config import load_config_data
from bridge.services import Actor, Services
from bridge.services.errors import (
    Conflict,
    InvalidValue,
    LastAdmin,
    SourceConflict,
    UserNameTaken,
    VersionMismatch,
)
from bridge.store.models import AccessType, AuditEvent, GroupUserMember, User


def user_count(services: Services) -> int:
    with services.store.read() as session:
        return session.scalar(select(func.count()).select_from(User))


def race(target, args: list) -> list[str]:
    """Run ``target(arg)`` for every arg in its own thread, all released at once; their outcomes."""
    outcomes: list[str] = []
    barrier = threading.Barrier(len(args))

    def run(arg) -> None:
        barrier.wait()
        outcomes.append(target(arg))

    threads = [threading.Thread(target=run, args=(arg,)) for arg in args]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def make_admin(services: Services, actor: Actor, name: str) -> str:
    with services.unit(actor) as uow:
        return uow.users.create(user_name=name, email=f"{name}@example.org", access_type="admin").id


# -- userName ------------------------------------------------------------------------


def test_user_name_is_unique_case_insensitively(services, operator, entra):
    with services.unit(operator) as uow:
        uow.users.create(user_name="Alice.Smith", email="alice@example.org")
    for actor, name in [(operator, "alice.smith"), (entra, "ALICE.SMITH"), (operator, " Alice.Smith ")]:
        with pytest.raises(UserNameTaken, match="already taken"), services.unit(actor) as uow:
            uow.users.create(user_name=name, email="other@example.org")
    assert user_count(services) == 1


def test_rename_into_a_taken_user_name_is_refused(services, operator):
    with services.unit(operator) as uow:
        uow.users.create(user_name="alice.smith", email="alice@example.org")
        bob = uow.users.create(user_name="bob.jones", email="bob@example.org")
    with pytest.raises(UserNameTaken), services.unit(operator) as uow:
        uow.users.update(uow.users.get(bob.id), user_name="ALICE.smith")
    with services.unit(operator) as uow:  # changing only the case of one's own name is fine
        assert uow.users.update(uow.users.get(bob.id), user_name="Bob.Jones").user_name == "Bob.Jones"


def test_concurrent_creation_of_one_user_name_yields_one_user(services, entra):
    """Two writers race for the same name: exactly one wins, the other gets the clear error."""
    def create(index: int) -> str:
        try:
            with services.unit(entra) as uow:
                uow.users.create(user_name="Race.User" if index % 2 else "race.user")
            return "created"
        except UserNameTaken:
            return "taken"

    outcomes = race(create, list(range(4)))
    assert sorted(outcomes) == ["created", "taken", "taken", "taken"]
    assert user_count(services) == 1


@pytest.mark.parametrize("bad_name, problem", [
    ("anna k", "white space"),
    ("anna\tk", "white space"),
    ("abcd", "shorter than 5"),
    ("", "required"),
])
def test_local_user_names_have_no_spaces_and_five_characters(services, operator, bad_name, problem):
    with pytest.raises(InvalidValue, match=problem), services.unit(operator) as uow:
        uow.users.create(user_name=bad_name, email="x@example.org")
    assert user_count(services) == 0


def test_idp_user_names_follow_the_idp(services, entra):
    """The 5-character and no-space rules are for names created here; an IdP's names are its own."""
    with services.unit(entra) as uow:
        assert uow.users.create(user_name="Jo Li").user_name == "Jo Li"


def test_local_users_need_an_email(services, operator):
    with pytest.raises(InvalidValue, match="e-mail"), services.unit(operator) as uow:
        uow.users.create(user_name="no.mail.user")


# -- last admin -----------------------------------------------------------------------


@pytest.mark.parametrize("change", [
    {"active": False},
    {"access_type": AccessType.backend},
    {"access_type": "api"},
])
def test_the_last_active_admin_cannot_be_removed(services, operator, change):
    admin_id = make_admin(services, operator, "root.admin")
    with pytest.raises(LastAdmin, match="last active admin"), services.unit(operator) as uow:
        uow.users.update(uow.users.get(admin_id), **change)
    with pytest.raises(LastAdmin), services.unit(operator) as uow:
        uow.users.delete(uow.users.get(admin_id))
    with services.store.read() as session:
        admin = session.get(User, admin_id)
        assert admin.active and admin.access_type == AccessType.admin


def test_an_admin_can_go_while_another_remains(services, operator):
    first = make_admin(services, operator, "first.admin")
    make_admin(services, operator, "second.admin")
    with services.unit(operator) as uow:
        uow.users.deactivate(uow.users.get(first))
    with services.store.read() as session:
        assert session.scalar(select(func.count()).select_from(User).where(
            User.active.is_(True), User.access_type == AccessType.admin)) == 1


def test_an_inactive_admin_does_not_count(services, operator):
    first = make_admin(services, operator, "first.admin")
    second = make_admin(services, operator, "second.admin")
    with services.unit(operator) as uow:
        uow.users.deactivate(uow.users.get(second))
    with pytest.raises(LastAdmin), services.unit(operator) as uow:
        uow.users.update(uow.users.get(first), access_type="backend")


def test_concurrent_demotion_of_two_admins_keeps_one(services, operator):
    """Each of two admins is demoted by a different writer at the same moment: one must fail."""
    ids = [make_admin(services, operator, f"admin.number{i}") for i in range(2)]
    def demote(user_id: str) -> str:
        try:
            with services.unit(operator) as uow:
                uow.users.update(uow.users.get(user_id), access_type="backend")
            return "demoted"
        except LastAdmin:
            return "refused"

    outcomes = race(demote, ids)
    assert sorted(outcomes) == ["demoted", "refused"]
    with services.store.read() as session:
        assert session.scalar(select(func.count()).select_from(User).where(
            User.active.is_(True), User.access_type == AccessType.admin)) == 1


# -- sources --------------------------------------------------------------------------


def test_a_source_cannot_overwrite_another_sources_user(services, entra, okta):
    with services.unit(entra) as uow:
        user_id = uow.users.create(user_name="carol@example.org", email="carol@example.org").id
    with pytest.raises(SourceConflict, match="belongs to source 'scim:entra'"), services.unit(okta) as uow:
        uow.users.update(uow.users.get(user_id), email="carol@evil.example")
    with pytest.raises(SourceConflict), services.unit(okta) as uow:
        uow.users.delete(uow.users.get(user_id))
    with services.store.read() as session:
        user = session.get(User, user_id)
        assert (user.email, user.source) == ("carol@example.org", "scim:entra")


def test_an_ownership_rule_lets_a_source_take_over(store, entra, okta):
    config = load_config_data({"ownership": {"rules": [{"source": "scim:okta", "may_take_over": ["scim:entra"]}]}})
    services = Services(store, config)
    with services.unit(entra) as uow:
        user_id = uow.users.create(user_name="dave@example.org").id
    with services.unit(okta) as uow:
        uow.users.update(uow.users.get(user_id), display_name="Dave")
    with services.store.read() as session:
        user = session.get(User, user_id)
        assert (user.display_name, user.source) == ("Dave", "scim:okta")
    with pytest.raises(SourceConflict), services.unit(entra) as uow:  # the rule is one-way
        uow.users.update(uow.users.get(user_id), display_name="Back")


def test_the_operator_decides_portal_fields_but_not_identity(services, entra, operator):
    with services.unit(entra) as uow:
        user_id = uow.users.create(user_name="erin@example.org", email="erin@example.org").id
    with services.unit(operator) as uow:
        uow.users.update(uow.users.get(user_id), access_type="admin", ip_allowlist=["10.0.0.0/8"])
    with pytest.raises(SourceConflict, match="email"), services.unit(operator) as uow:
        uow.users.update(uow.users.get(user_id), email="erin@elsewhere.example")


def test_groups_belong_to_their_source_too(services, entra, okta):
    with services.unit(entra) as uow:
        group_id = uow.groups.create("Finance").id
    with pytest.raises(SourceConflict), services.unit(okta) as uow:
        uow.groups.update(uow.groups.get(group_id), display_name="Hijacked")
    with pytest.raises(SourceConflict), services.unit(okta) as uow:
        uow.groups.change_members(uow.groups.get(group_id), add_users=[])


# -- audit ----------------------------------------------------------------------------


def test_every_change_is_audited_with_before_and_after(services, entra):
    with services.unit(entra) as uow:
        user = uow.users.create(user_name="frank@example.org", display_name="Frank")
        group = uow.groups.create("Sales")
        uow.groups.change_members(group, add_users=[user.id])
    with services.unit(entra) as uow:
        uow.users.update(uow.users.get(user.id), display_name="Frank N.", active=False)
    with services.store.read() as session:
        events = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
    assert [e.action for e in events] == ["user.create", "group.create", "group.members", "user.deactivate"]
    last = events[-1]
    assert (last.actor, last.source, last.channel) == ("entra", "scim:entra", "scim")
    assert last.changes["display_name"] == ["Frank", "Frank N."]
    assert last.changes["active"] == [True, False]
    assert set(last.changes) == {"display_name", "active"}
    assert events[2].changes["added"] == [user.id]


def test_audit_never_holds_secrets(services, operator):
    with services.unit(operator) as uow:
        user = uow.users.create(user_name="grace.hopper", email="grace@example.org")
        uow.users.set_password_hash(user, "$argon2id$v=19$m=65536,t=3,p=4$c2VjcmV0$aGFzaA")
    with services.store.read() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "user.password")).one()
    assert event.changes["password_hash"] == [None, "<redacted>"]
    assert "argon2" not in repr(event.changes)


def test_an_unchanged_update_writes_nothing(services, entra):
    with services.unit(entra) as uow:
        user = uow.users.create(user_name="heidi@example.org", display_name="Heidi")
    with services.unit(entra) as uow:
        uow.users.update(uow.users.get(user.id), display_name="Heidi")
    with services.store.read() as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 1
        assert session.get(User, user.id).version == 1


# -- atomicity and versions -------------------------------------------------------------


def test_a_failed_unit_leaves_the_store_as_it_was(services, entra):
    with services.unit(entra) as uow:
        uow.users.create(user_name="ivan@example.org")
    with pytest.raises(UserNameTaken), services.unit(entra) as uow:
        uow.users.create(user_name="judy@example.org")
        uow.groups.create("Half applied")
        uow.users.create(user_name="IVAN@example.org")  # fails: the whole unit is rolled back
    with services.store.read() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 1
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 1


def test_versions_guard_against_lost_updates(services, entra):
    with services.unit(entra) as uow:
        user = uow.users.create(user_name="kim@example.org")
    assert user.version == 1
    with services.unit(entra) as uow:
        assert uow.users.update(uow.users.get(user.id), expected_version=1, display_name="Kim").version == 2
    with pytest.raises(VersionMismatch), services.unit(entra) as uow:
        uow.users.update(uow.users.get(user.id), expected_version=1, display_name="Stale")


# -- groups ---------------------------------------------------------------------------


def test_nested_groups_refuse_cycles(services, entra):
    with services.unit(entra) as uow:
        a, b, c = (uow.groups.create(n) for n in ("A", "B", "C"))
        uow.groups.change_members(a, add_groups=[b.id])
        uow.groups.change_members(b, add_groups=[c.id])
    with pytest.raises(Conflict, match="cycle"), services.unit(entra) as uow:
        uow.groups.change_members(uow.groups.get(c.id), add_groups=[a.id])


def test_memberships_of_different_origins_are_independent(services, entra):
    """A rule's membership stays when the source removes its own, and the other way round."""
    with services.unit(entra) as uow:
        user = uow.users.create(user_name="lena@example.org")
        group = uow.groups.create("X12345-Heidelberg")
        uow.groups.change_members(group, add_users=[user.id])
        uow.groups.change_members(group, add_users=[user.id], origin="sales:12345")
    with services.unit(entra) as uow:
        uow.groups.set_members(uow.groups.get(group.id), user_ids=[])
    with services.store.read() as session:
        origins = session.scalars(select(GroupUserMember.origin).where(GroupUserMember.user_id == user.id)).all()
    assert origins == ["sales:12345"]


def test_group_version_changes_with_its_members(services, entra):
    with services.unit(entra) as uow:
        user = uow.users.create(user_name="mia@example.org")
        group = uow.groups.create("Ops")
    with services.unit(entra) as uow:
        group = uow.groups.get(group.id)
        before = group.version
        uow.groups.change_members(group, add_users=[user.id])
        assert group.version == before + 1
