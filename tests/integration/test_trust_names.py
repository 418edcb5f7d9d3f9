"""One identity per name on every channel (issue "Trust boundaries between sources"): names
that differ only in case, width, spacing, compatibility form or invisible characters
are the same name (bridge.names), so no source shadows another's user or group with a
look-alike, and no look-alike spelling dodges the lockout of the real name."""

from __future__ import annotations

import pytest
from sqlalchemy import func, insert, select

from bridge.accounts.csv_import import import_users
from bridge.names import identity_key
from bridge.services import Actor
from bridge.store import Store, migrate
from bridge.store.models import Group, SourceConflict, User
from tests.fixtures.accounts import GOOD_PASSWORD, accounts_config, attempt
from tests.integration.test_accounts_login import make_user
from tests.integration.test_scim_http import CORE, scim_for

LOOKALIKES = ["ALICE.NAMES", "ａlice.names", "alice\u200b.names", "alice.names\u00ad", " alice.names",
              "alice.names\u034f", "alice\ufe0f.names", "\u3164alice.names", "alice.names\U000e0100",
              "alice.\u2800names"]


@pytest.fixture
def config():
    return accounts_config()


@pytest.mark.parametrize("spelling", ["john  doe", "John\u00a0Doe", "ｊohn doe", "jo\u200dhn doe", "JOHN DOE "])
def test_the_key_folds_what_a_reader_or_a_directory_cannot_tell_apart(spelling):
    assert identity_key(spelling) == identity_key("john doe") == "john doe"
    assert identity_key(identity_key(spelling)) == identity_key(spelling)


def test_distinct_names_stay_distinct():
    assert len({identity_key(n) for n in ("john.doe", "john-doe", "johndoe", "jöhn.doe", "john.doe2")}) == 5


@pytest.mark.parametrize("spelling", LOOKALIKES)
def test_the_admin_api_refuses_a_lookalike_of_a_local_user(client, admin_headers, runtime, spelling):
    made = client.post("/api/v1/users", json={"user_name": "alice.names", "email": "alice@example.org"},
                       headers=admin_headers)
    assert made.status_code == 201
    if " " in spelling.strip() or spelling != spelling.strip():
        spelling = spelling.strip()  # local userNames may hold no white space; the trimmed one still collides
    again = client.post("/api/v1/users", json={"user_name": spelling, "email": "other@example.org"},
                        headers=admin_headers)
    assert again.status_code == 409 and again.json["error"]["field"] == "user_name", again.json


@pytest.mark.parametrize("spelling", LOOKALIKES)
def test_scim_cannot_shadow_a_local_user_with_a_lookalike(client, runtime, admin_headers, spelling):
    client.post("/api/v1/users", json={"user_name": "alice.names", "email": "alice@example.org"},
                headers=admin_headers)
    idp = scim_for(client, runtime, "idp2")
    made = idp.post("/Users", {"schemas": [CORE], "userName": spelling})
    assert made.status_code == 409 and made.json["scimType"] == "uniqueness"
    assert "local" not in made.json["detail"]  # whose the name is stays unsaid


@pytest.mark.parametrize("spelling", ["finance", "FINANCE", "ﬁnance", "fi\u200bnance", "finance  "])
def test_a_source_cannot_have_two_groups_that_look_alike(client, runtime, spelling):
    idp = scim_for(client, runtime, "idp1")
    assert idp.post("/Groups", {"displayName": "Finance"}).status_code == 201
    again = idp.post("/Groups", {"displayName": spelling})
    assert again.status_code == 409 and again.json["scimType"] == "uniqueness"


@pytest.mark.parametrize("name", ["\u200b", "\u200b\u200d", "\u00ad ", "\u3164", "\u2800\ufe0f"])
def test_a_name_with_no_visible_character_is_refused(client, runtime, admin_headers, name):
    idp = scim_for(client, runtime, "idp1")
    made = idp.post("/Users", {"schemas": [CORE], "userName": name})
    assert made.status_code == 400 and made.json["scimType"] == "invalidValue"
    assert idp.post("/Groups", {"displayName": name}).status_code == 400


def test_a_csv_row_with_a_lookalike_name_updates_the_user_it_names(runtime):
    importer = Actor(name="cli:test", channel="import")
    report = import_users(runtime.services, importer, "user_name,email\nalice.csv,alice@example.org\n")
    assert report.applied and report.count("create") == 1
    report = import_users(runtime.services, importer, "user_name,email\nＡＬＩＣＥ.csv,alice2@example.org\n")
    assert report.applied and report.count("update") == 1 and report.count("create") == 0
    with runtime.store.read() as session:
        assert session.scalar(select(func.count()).select_from(User).where(User.user_name_key == "alice.csv")) == 1
        assert session.scalar(select(User.email).where(User.user_name_key == "alice.csv")) == "alice2@example.org"


def test_lookalike_spellings_count_toward_the_same_lockout(client, runtime, admin_headers):
    make_user(runtime, "bob.names")
    policy = runtime.config.policy.lockout
    spellings = ["BOB.NAMES", "ｂob.names", "bob\u200b.names", "bob.names\u00ad", "Bob.Names"]
    for i in range(policy.max_failures_per_account):
        spelling = spellings[i % len(spellings)]
        assert attempt(client, admin_headers, spelling, "wrong-Password-1").status_code == 401
    assert attempt(client, admin_headers, "bob.names", GOOD_PASSWORD).status_code == 423


def test_migrations_0008_0009_rekey_names_and_show_an_old_pair_as_a_conflict(db_url):
    """Names stored before 0008 get the new key; of two that share it, the one holding it
    keeps it and the other gets a placeholder key and an open conflict (nothing is lost;
    the operator renames one). Keys that an old key of another row equals do not trip the
    unique index on the way."""
    store = Store(db_url)
    migrate.upgrade(store.engine, "0007")
    base = {"source": "scim:entra", "kind": "internal", "attributes": {}, "ip_allowlist": [], "active": True,
            "access_type": "backend", "customer_admin": False, "must_change_password": False, "version": 1}
    tricky = ["\u0345\u0302", "\u200b\u03b9\u0302", "\u0302\u03b9"]  # old keys meeting new ones
    with store.write() as session:
        session.execute(insert(User.__table__), [
            {**base, "id": "u1", "user_name": "John Doe", "user_name_key": "john doe"},
            {**base, "id": "u2", "user_name": "john  doe", "user_name_key": "john  doe", "source": "scim:okta"},
            {**base, "id": "u3", "user_name": "ｖictim", "user_name_key": "ｖictim"},
            *({**base, "id": f"t{i}", "user_name": name, "user_name_key": name.strip().casefold()}
              for i, name in enumerate(tricky))])
        session.execute(insert(Group.__table__), [
            {"id": "g1", "display_name": "ﬁnance", "display_name_key": "ﬁnance", "kind": "directory",
             "source": "scim:entra", "attributes": {}, "version": 1}])
    migrate.upgrade(store.engine)
    with store.read() as session:
        keys = {user_id: key for user_id, key in session.execute(select(User.id, User.user_name_key))}
        group_key = session.scalar(select(Group.display_name_key).where(Group.id == "g1"))
        [conflict] = session.scalars(select(SourceConflict).where(SourceConflict.subject == "john  doe"))
    assert (keys["u1"], keys["u2"], keys["u3"], group_key) == ("john doe", " u2", "victim", "finance")
    assert len(set(keys.values())) == len(keys)
    assert (conflict.source, conflict.holder, conflict.resolved_at) == ("scim:okta", "scim:entra", None)
    assert "John Doe" in conflict.detail and "rename" in conflict.detail
    store.dispose()


@pytest.mark.parametrize("name", ["\ufdfa" * 15, "\u3300" * 70])
def test_a_name_longer_than_its_key_column_once_normalised_is_a_400_not_a_500(client, runtime, name):
    """U+FDFA is one character and 18 once NFKC-normalised: the 256 limit holds for the key."""
    idp = scim_for(client, runtime, "idp1")
    made = idp.post("/Users", {"schemas": [CORE], "userName": name})
    assert made.status_code == 400 and made.json["scimType"] == "invalidValue", made.json
    assert idp.post("/Groups", {"displayName": name}).status_code == 400
