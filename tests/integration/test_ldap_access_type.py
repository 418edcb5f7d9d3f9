"""A directory group sets the access type, synced from a real slapd: members become admins
or API users, leaving falls back at the next sync, and the last active admin stays."""

from __future__ import annotations

from sqlalchemy import select

from bridge.ldap.sync import run_sync
from bridge.mapping.engine import authorizer
from bridge.runtime import build_runtime
from bridge.store.models import AuditEvent, User
from tests.fixtures.app import make_config
from tests.fixtures.slapd import source_settings

RULES = [{"source": "ldap:corp", "group": "portaladmins", "access_type": "admin"},
         {"source": "ldap:corp", "group_regex": "^cn=api clients,", "access_type": "api"}]  # on the DN


def access(store) -> dict[str, tuple[str, int | None]]:  # type: ignore[no-untyped-def]
    with store.read() as session:
        return {u.user_name: (u.access_type.value, u.access_type_rule)
                for u in session.scalars(select(User).where(User.source == "ldap:corp"))}


def test_a_directory_group_sets_the_access_type_until_the_last_admin_would_go(store, slapd, ldap_tree):
    alice, bob, carol = (ldap_tree.add_user(uid) for uid in ("alice", "bob", "carol"))
    admins = ldap_tree.add_group("PortalAdmins", [alice, bob])
    ldap_tree.add_group("API Clients", [carol, bob])
    rt = build_runtime(make_config(ldap={"sources": [source_settings(slapd, ldap_tree, admins=True)]},
                                   mapping={"rules": RULES}), store=store)
    assert run_sync(rt, "corp").status == "ok"
    assert access(store) == {"alice": ("admin", 1), "bob": ("admin", 1), "carol": ("api", 2)}
    bob_admin = authorizer(rt).check("bob", "anything", "instance", explain=True)
    assert bob_admin.allowed and [link.name for link in (bob_admin.because or [])[0].via] == [
        "bob", "ldap:corp group 'portaladmins'", "admin"]

    ldap_tree.modify(admins, member=[alice])  # bob leaves: the API rule is what is left
    assert run_sync(rt, "corp", full=True).status == "ok"
    assert access(store) == {"alice": ("admin", 1), "bob": ("api", 2), "carol": ("api", 2)}

    ldap_tree.modify(admins, member=[""])  # the last admin leaves: the sync goes on, alice stays admin
    result = run_sync(rt, "corp", full=True)
    assert (result.status, result.counts.errors) == ("ok", 0)
    assert access(store)["alice"] == ("admin", 1)
    with store.read() as session:
        refused = [e.changes["refused"][1] for e in session.scalars(select(AuditEvent).where(
            AuditEvent.action == "refused", AuditEvent.target_name == "alice"))]
    assert len(refused) == 1 and "'alice' stays admin, the last active one" in refused[0]
    assert "the last active one" in (authorizer(rt).check("alice", "x", "instance", explain=True).access_note or "")

    ldap_tree.modify(admins, member=[carol])  # another admin: alice's demotion goes through
    assert run_sync(rt, "corp", full=True).status == "ok"
    assert access(store) == {"alice": ("backend", None), "bob": ("api", 2), "carol": ("admin", 1)}
