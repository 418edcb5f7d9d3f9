"""A NUL character in any text, through the service layer (every channel's one write path),
is refused with an error naming the field on both stores, and the store is left as it was:
PostgreSQL refuses NUL in text (a 500 there before), SQLite would keep it."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from bridge.accounts.csv_import import import_users
from bridge.services import Actor, ServiceError
from bridge.store.models import Customer, Group, Role, ScopeNode, User

ADMIN = Actor(name="nul-test")
NUL = "a\x00b"


def _counts(runtime) -> tuple[int, ...]:
    with runtime.store.read() as session:
        return tuple(session.scalar(select(func.count()).select_from(table)) or 0
                     for table in (User, Group, Customer, Role, ScopeNode))


WRITES: list[tuple[str, Any]] = [
    ("user_name", lambda uow: uow.users.create(user_name=f"nul{NUL}user", email="n@example.org")),
    ("display_name", lambda uow: uow.users.create(user_name="nul.user", email="n@example.org", display_name=NUL)),
    ("email", lambda uow: uow.users.create(user_name="nul.user", email=f"n{NUL}@example.org")),
    ("given_name", lambda uow: uow.users.create(user_name="nul.user", email="n@example.org", given_name=NUL)),
    ("external_id", lambda uow: uow.users.create(user_name="nul.user", email="n@example.org", external_id=NUL)),
    ("customer_id", lambda uow: uow.users.create(user_name="nul.user", email="n@example.org", customer_id=NUL)),
    ("display_name", lambda uow: uow.groups.create(NUL)),
    ("display_name", lambda uow: uow.groups.create_many([{"display_name": NUL}])),
    ("external_id", lambda uow: uow.groups.create("nul group", external_id=NUL)),
    ("number", lambda uow: uow.customers.create(NUL, "Nul GmbH")),
    ("name", lambda uow: uow.customers.create("4711", NUL)),
    ("short_name", lambda uow: uow.customers.create("4711", "Nul GmbH", short_name=NUL)),
    ("name", lambda uow: uow.roles.create(NUL)),
    ("description", lambda uow: uow.roles.create("nul_role", description=NUL)),
    ("scope", lambda uow: uow.scopes.create(f"pool:{NUL}")),
    ("attributes", lambda uow: uow.users.create(user_name="nul.attr", email="n@example.org",
                                                attributes={"title": NUL})),
    ("attributes", lambda uow: uow.users.create(user_name="nul.attr", email="n@example.org",
                                                attributes={"emails": [{"value": "n@example.org"}], NUL: "x"})),
    ("attributes", lambda uow: uow.users.create_many([{"user_name": "nul.attr", "email": "n@example.org",
                                                       "attributes": {"departments": ["ok", NUL]}}])),
    ("attributes", lambda uow: uow.groups.create("nul attr group", attributes={"note": NUL})),
    ("name", lambda uow: uow.scopes.create("pool:nul-1", name=NUL)),
]


@pytest.mark.parametrize(("field", "write"), WRITES, ids=[f"{i}-{f}" for i, (f, _) in enumerate(WRITES)])
def test_a_nul_in_any_written_text_is_refused_naming_its_field(runtime, field, write):
    before = _counts(runtime)
    with pytest.raises(ServiceError) as refused, runtime.services.unit(ADMIN) as uow:
        write(uow)
    assert refused.value.status < 500 and refused.value.field == field, (refused.value, refused.value.field)
    assert _counts(runtime) == before


def test_a_nul_in_an_updated_text_is_refused(runtime):
    with runtime.services.unit(ADMIN) as uow:
        user = uow.users.create(user_name="nul.update", email="u@example.org")
        group = uow.groups.create("nul update group")
        customer = uow.customers.create("4712", "Update GmbH")
        user_id, group_id, customer_id = user.id, group.id, customer.id
    for field, change in (("display_name", lambda uow: uow.users.update(uow.users.get(user_id), display_name=NUL)),
                          ("user_name", lambda uow: uow.users.update(uow.users.get(user_id), user_name=NUL)),
                          ("display_name", lambda uow: uow.groups.update(uow.groups.get(group_id), display_name=NUL)),
                          ("name", lambda uow: uow.customers.update(uow.customers.get(customer_id), name=NUL))):
        with pytest.raises(ServiceError) as refused, runtime.services.unit(ADMIN) as uow:
            change(uow)
        assert refused.value.field == field
    with runtime.store.read() as session:
        assert session.get(User, user_id).display_name is None
        assert session.get(Group, group_id).display_name == "nul update group"
        assert session.get(Customer, customer_id).name == "Update GmbH"


def test_lookups_of_a_name_with_a_nul_find_nothing(runtime):
    """For a caller that reaches the services directly: NotFound, not the driver's refusal."""
    with runtime.services.unit(ADMIN) as uow:
        assert uow.customers.by_ref(NUL) is None
        for lookup in (uow.customers.get, uow.users.get, uow.users.by_ref, uow.groups.get, uow.roles.get,
                       uow.tokens.get):
            with pytest.raises(ServiceError) as missing:
                lookup(NUL)
            assert missing.value.status == 404, lookup


def test_a_csv_file_with_a_nul_is_refused_whole_naming_its_line(runtime):
    before = _counts(runtime)
    text = "user_name;email;display_name\ngood.user;g@example.org;Good\nnul.user;n@example.org;a\x00b\n"
    report = import_users(runtime.services, ADMIN, text)
    assert not report.applied and report.problems == ["line 3 holds a NUL character, which no field may hold"]
    assert _counts(runtime) == before


def test_a_login_with_a_nul_is_refused_on_every_channel_before_anything_is_recorded(client, runtime,
                                                                                   admin_headers):
    """The operator's form, the admin API's login and the accounts layer itself: a 400/422
    (no 500: PostgreSQL refuses NUL even in the name's lookup), and no attempt counted."""
    from bridge.accounts.context import context_for
    from bridge.accounts.login import login
    from bridge.store.models import LoginAttempt
    from tests.fixtures.browser import login_form

    form = login_form(client, f"ops{NUL}person", "Some-Password-1", None)
    assert form.status_code == 400 and "NUL" in form.get_data(as_text=True)
    api = client.post("/api/v1/auth/login", json={"user_name": NUL, "password": "Some-Password-1"},
                      headers=admin_headers)
    assert api.status_code == 422
    for name, address in ((NUL, "10.0.0.1"), ("ops.person", f"10.0.0.1{NUL}")):
        outcome = login(context_for(runtime), name, "Some-Password-1", None, address)
        assert outcome.status == 400 and outcome.code == "invalidValue"
    with runtime.store.read() as session:
        assert session.scalar(select(func.count()).select_from(LoginAttempt)) == 0


def test_a_directory_entry_with_a_nul_is_reported_and_the_others_sync(store, ldap_tree):
    """slapd keeps a NUL in a displayName or givenName (a Directory String); the sync reports
    that entry by DN and field and goes on with the rest, on both stores."""
    from bridge.ldap.sync import run_sync
    from tests.fixtures.slapd import source_settings
    from tests.integration.test_ldap_sync import runtime_for, users_by_name

    ldap_tree.add_user("plain.one")
    display = ldap_tree.add_user("nul.display", displayName=NUL)
    given = ldap_tree.add_user("nul.given", givenName=NUL)
    title = ldap_tree.add_user("nul.title", title=NUL)  # an extra attribute: the user's JSON attributes
    result = run_sync(runtime_for(store, **source_settings(ldap_tree.server, ldap_tree,
                                                           attributes={"title": "title"})), "corp")
    assert result.status == "ok" and result.counts.added == 1 and result.counts.errors == 3, result.errors
    assert sorted(result.errors) == sorted([f"user {display}: display_name: contains a NUL character",
                                            f"user {given}: given_name: contains a NUL character",
                                            f"user {title}: attributes.title: contains a NUL character"])
    assert sorted(users_by_name(store)) == ["plain.one"]
