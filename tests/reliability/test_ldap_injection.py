"""LDAP injection through every value that reaches a filter or a DN, against the real
slapd (tests/fixtures/slapd.py):

- the login of directory users (a user name typed by anyone): it is looked up in the
  store, and the bind is made as the DN stored for that user, so no typed value reaches
  LDAP; the bind itself refuses DNs that are patterns, not names;
- the incremental sync's change mark, which goes into ``(modifyTimestamp>=MARK)``;
- write-back: SCIM values become RDNs (and ``member`` values) of entries.

None may authenticate anyone, match more than the exact entry, or land anywhere but
at its own, literal name."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ldap3
import pytest
from sqlalchemy import select, update

from bridge.config import load_config_data
from bridge.ldap.auth import verify_password
from bridge.ldap.directory import changed_since_filter
from bridge.ldap.dn import dn_key
from bridge.ldap.presets import attribute_map
from bridge.ldap.sync import run_sync
from bridge.ldap.writeback import group_dn, user_dn
from bridge.runtime import Runtime, build_runtime
from bridge.services.users import user_name_key
from bridge.store import Store, migrate
from bridge.store.models import SyncRun, User
from tests.fixtures.accounts import FAST_HASH
from tests.fixtures.app import create_token
from tests.fixtures.slapd import LdapTree, SlapdServer, source_settings
from tests.reliability.conftest import Report

SCIM_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
SCIM_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


def _runtime(tmp_path: Path, ldap_source: dict[str, Any], **tables: Any) -> Runtime:
    store = Store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    migrate.upgrade(store.engine)
    config = load_config_data({"data_dir": str(tmp_path), "ldap": {"sources": [ldap_source]},
                               "policy": {"password": FAST_HASH, "lockout": {
                                   "max_failures_per_account": 100000, "max_failures_per_ip": 100000}},
                               **tables})
    return build_runtime(config, store=store)


@pytest.fixture
def seed_runtime(tmp_path: Path, slapd: SlapdServer) -> Iterator[Runtime]:
    """The seed directory (ten users, each with a password of their own), synced."""
    rt = _runtime(tmp_path, source_settings(slapd))
    assert run_sync(rt, "corp").status == "ok"
    yield rt
    rt.store.dispose()


def _names(slapd: SlapdServer) -> list[str]:
    dn = slapd.user_dns["alice"]
    return [
        "*", "**", "(", ")", "\\", "\x00", "*)", "(*)", "*)(uid=*", "*)(|(uid=*", "*))(|(uid=*", "admin)(uid=*",
        "alice)(uid=*", "alice)(|(uid=*)", "alice*", "*alice", "al*ce", "a*", "alice\x00", "alice\x00*", "\x00alice",
        "alice\\00", "\\2a", "alice\\2a", "alice)", "(alice", "alice)(objectClass=*", "*)(objectClass=*",
        "uid=alice", f"{dn}", f"uid=*,{dn.split(',', 1)[1]}", "alice,ou=people", "cn=admin,dc=example,dc=org",
        "alice\n", "alice\r\nuid: bob", "alice\t", "\talice ", "alice\nbob", "ALICE*", "|", "&", "!", "alice|bob",
        "(|(uid=alice)(uid=bob))",
        "#alice", "alice;", "alice+cn=x", "=alice", "alice=", "alice\u200b", "\u0430lice",  # Cyrillic a
    ]


def test_login_names_cannot_inject_into_the_directory(seed_runtime: Runtime, slapd: SlapdServer, report: Report):
    from bridge.web import create_app

    client = create_app(seed_runtime).test_client()
    headers = {"Authorization": f"Bearer {create_token(seed_runtime, 'portal', 'admin')}"}

    def attempt(name: str, password: str) -> Any:
        return client.post("/api/v1/auth/login", headers=headers,
                           json={"username": name, "password": password, "client_ip": "192.0.2.44"})

    with seed_runtime.store.read() as session:
        synced = {u.user_name for u in session.scalars(select(User).where(User.source == "ldap:corp"))}
    assert len(synced) >= 8, synced
    assert attempt("alice", slapd.passwords["alice"]).status_code == 200  # the directory answers binds
    tried = 0
    for name in _names(slapd):
        for uid, password in slapd.passwords.items():
            response = attempt(name, password)
            tried += 1
            if user_name_key(name) == user_name_key(uid):
                # the same name by the user-name rule (white space around, case): that user only
                assert response.status_code == 200 and response.json["user"]["user_name"] == uid, (name, uid)
                continue
            allowed = (400, 401, 422) if "\x00" in name else (400, 401)  # a NUL is refused before any lookup
            assert response.status_code in allowed, (name, uid, response.status_code, response.json)
            if response.status_code == 401:
                assert response.json["error"]["code"] == "invalidCredentials", (name, response.json)
    report.add("inputs", target="LDAP injection: login user names x seed passwords", tried=tried)


def test_the_bind_refuses_dns_that_are_patterns(slapd: SlapdServer, tmp_path: Path, report: Report):
    """verify_password binds as the DN stored for the user: even a stored DN that is a
    pattern or carries filter syntax binds as nobody (a bind takes a name, not a filter)."""
    source = load_config_data({"ldap": {"sources": [source_settings(slapd)]}}).ldap.sources[0]
    alice = slapd.user_dns["alice"]
    base = alice.split(",", 1)[1]
    assert verify_password(source, alice, slapd.passwords["alice"]) is True
    assert verify_password(source, alice, slapd.passwords["bob"]) is False
    hostile = ["*", f"uid=*,{base}", f"uid=alice*,{base}", f"uid=a*,{base}", f"uid=alice)(uid=*,{base}",
               f"uid=*)(|(uid=*,{base}", f"uid=\\2a,{base}", f"uid=alice\\00,{base}", f"uid=alice\x00,{base}",
               f"{alice}\x00", f"{alice},", "(uid=alice)", f"(&(uid=*)),{base}", base, "dc=example,dc=org",
               "uid=alice", "alice", f"{alice}*", "", " ", "cn=admin,dc=example,dc=org"]
    tried = 2
    for dn in hostile:
        for password in (*slapd.passwords.values(), "", " ", "*", "\x00"):
            tried += 1
            assert verify_password(source, dn, password) is False, (dn, password)
    for password in ("", " ", "*", "\x00", "alice-Secret-1\x00", "alice-Secret-1*"):
        tried += 1
        assert verify_password(source, alice, password) is False, password  # no unauthenticated bind either
    report.add("inputs", target="LDAP injection: bind DNs and passwords", tried=tried)


CSN = "{}.000000Z#000000#000#000000"  # OpenLDAP's change marker, entryCSN
HOSTILE_MARKS = ["*", "*)(objectClass=*", CSN.format("20990101000000") + ")(objectClass=*",
                 CSN.format("20990101000000") + ")(|(uid=*", "\\2a", CSN.format("20990101000000") + "*",
                 "(", ")", CSN.format("20990101000000") + "\x00)(uid=*", "20990101000000Z)(entryCSN>=0"]


def test_the_change_mark_is_a_value_not_filter_syntax(ldap_tree: LdapTree, tmp_path: Path, report: Report):
    tree = ldap_tree
    tree.server.ldapadd("".join(
        f"dn: uid=mark{i},{tree.users_base}\nobjectClass: inetOrgPerson\nuid: mark{i}\ncn: m {i}\nsn: m\n\n"
        for i in range(4)))
    rt = _runtime(tmp_path, source_settings(tree.server, tree))
    try:
        amap = attribute_map(rt.config.ldap.sources[0])
        conn = tree.conn

        def matched(since: str) -> set[str]:
            search_filter = changed_since_filter(amap.users_filter, amap, since)
            try:
                conn.search(tree.users_base, search_filter, ldap3.SUBTREE, attributes=["uid"])
            except ldap3.core.exceptions.LDAPException:
                return set()  # refused as a malformed value: matches nothing
            return {e["attributes"]["uid"][0] for e in conn.response if e.get("type") == "searchResEntry"}

        assert amap.marker == "csn"
        assert matched(CSN.format("19700101000000")) == {f"mark{i}" for i in range(4)}  # the filter works
        assert matched(CSN.format("20991231000000")) == set()
        tried = 2
        for mark in HOSTILE_MARKS:
            tried += 1
            assert matched(mark) == set(), mark  # never "everything changed"
        # A sync whose stored mark is hostile: it is not taken as filter syntax (a full scan, or a
        # search that matches nothing), and no user is lost on the way.
        assert run_sync(rt, "corp").status == "ok"
        for mark in HOSTILE_MARKS:
            with rt.store.write() as session:
                session.execute(update(SyncRun).where(SyncRun.source == "corp", SyncRun.status == "ok")
                                .values(high_water_mark=mark[:64]))
            result = run_sync(rt, "corp")
            tried += 1
            assert result.status == "ok", (mark, result.error)
            with rt.store.read() as session:
                users = {u.user_name: u.active for u in session.scalars(select(User).where(User.source == "ldap:corp"))}
            assert users == {f"mark{i}": True for i in range(4)}, (mark, users)
    finally:
        rt.store.dispose()
    report.add("inputs", target="LDAP injection: incremental change marks", tried=tried)


# -- write-back -------------------------------------------------------------------------

HOSTILE_USER_NAMES = [
    "star*user", "*", "x)(uid=*", "*)(|(uid=*", "comma,ou=admins", "c,ou=people,dc=example,dc=org", "plus+cn=admin",
    "#hash", "trailing\\", "back\\slash", 'q"uote', "lt<gt>", "semi;colon", "eq=uals", "\\2a", "paren()",
    "nul\x00byte", "sp ace", "tab\tbed", "ünï©ødé", "a\\,b", "\\", "=", "uid=admin,dc=example,dc=org",
]
HOSTILE_GROUP_NAMES = ["G*)(cn=*", "Fleet, Nord", "x+cn=y", "#g", "(&)", "nul\x00group", "back\\", "=g"]


@pytest.fixture
def writeback(ldap_tree: LdapTree, tmp_path: Path) -> Iterator[tuple[Runtime, LdapTree, Any]]:
    tree = ldap_tree
    tree.conn.add(f"ou=scim,{tree.base}", ["organizationalUnit"], {"ou": "scim"})
    tree.conn.add(f"ou=people,ou=scim,{tree.base}", ["organizationalUnit"], {"ou": "people"})
    tree.conn.add(f"ou=groups,ou=scim,{tree.base}", ["organizationalUnit"], {"ou": "groups"})
    rt = _runtime(tmp_path, source_settings(tree.server, tree, users_base=tree.base, groups_base=tree.base,
                                            writeback={"enabled": True,
                                                       "users_base": f"ou=people,ou=scim,{tree.base}",
                                                       "groups_base": f"ou=groups,ou=scim,{tree.base}"}))
    yield rt, tree, rt.config.ldap.sources[0]
    rt.store.dispose()


def _entries(tree: LdapTree) -> dict[str, dict[str, Any]]:
    """dn_key -> attributes of every entry under the tree."""
    tree.conn.search(tree.base, "(objectClass=*)", ldap3.SUBTREE, attributes=["uid", "cn", "member"])
    return {_key(e["dn"]): e["attributes"] for e in tree.conn.response if e.get("type") == "searchResEntry"}


def _key(dn: str) -> str:
    try:
        return dn_key(dn)
    except ldap3.core.exceptions.LDAPInvalidDnError:  # ldap3's parser and an escaped trailing space
        return dn.lower()


def test_scim_values_written_back_land_literally(writeback, report: Report):
    from bridge.web import create_app

    rt, tree, source = writeback
    client = create_app(rt).test_client()
    headers = {"Authorization": f"Bearer {create_token(rt, 'entra', 'scim')}",
               "Content-Type": "application/scim+json"}
    before = set(_entries(tree))
    ids: dict[str, str] = {}
    tried = 0
    for name in HOSTILE_USER_NAMES:
        response = client.post("/scim/v2/Users", headers=headers, data=json.dumps(
            {"schemas": [SCIM_USER], "userName": name, "displayName": f"{name} (display)",
             "emails": [{"value": f"u{len(ids)}@example.org", "primary": True}]}))
        tried += 1
        if response.status_code == 400:
            continue  # SCIM refused the value: nothing to write back
        assert response.status_code == 201, (name, response.status_code, response.json)
        ids[name] = response.json["id"]
    assert len(ids) >= len(HOSTILE_USER_NAMES) - 3, sorted(set(HOSTILE_USER_NAMES) - set(ids))
    groups: dict[str, str] = {}
    for name in HOSTILE_GROUP_NAMES:
        response = client.post("/scim/v2/Groups", headers=headers, data=json.dumps(
            {"schemas": [SCIM_GROUP], "displayName": name, "members": [{"value": v} for v in ids.values()]}))
        tried += 1
        if response.status_code == 400:
            continue
        assert response.status_code == 201, (name, response.status_code, response.json)
        groups[name] = response.json["id"]
    entries = _entries(tree)
    user_keys = {dn_key(user_dn(source, name)): name for name in ids}
    group_keys = {dn_key(group_dn(source, name)): name for name in groups}
    # Every value has its own entry, at its own name, holding the value as it is ...
    for key, name in user_keys.items():
        assert key in entries, (name, key)
        assert entries[key]["uid"] == [name], (name, entries[key]["uid"])
    for key, name in group_keys.items():
        assert key in entries, (name, key)
        assert name in entries[key]["cn"], (name, entries[key]["cn"])
        assert {dn_key(m) for m in entries[key]["member"]} == set(user_keys), name
    # ... and nothing was written anywhere else (no entry moved out by a ",ou=..." or "+cn=").
    assert set(entries) - before == set(user_keys) | set(group_keys)
    report.add("inputs", target="LDAP injection: SCIM values written back (users, groups, members)",
               tried=tried + len(user_keys) + len(group_keys))


def test_values_scim_refuses_are_still_escaped_when_written_back(writeback, report: Report):
    """SCIM refuses NUL; write-back must not rely on that: a value with NUL (or the other
    specials at the edges) is written at its own name, literally, and nowhere else."""
    from bridge.ldap.writeback import writeback_user

    rt, tree, source = writeback
    before = set(_entries(tree))
    written: list[str] = []
    names = ["nul\x00byte", "\x00", "#lead", " lead", "trail ", "a\\,b\x00,ou=x", "+", ",", "\\", "x,ou=y+cn=z"]
    for n, name in enumerate(names):
        user = User(id=f"transient-{n}", user_name=name, user_name_key=name.casefold(), source="scim:entra",
                    active=True, email=f"t{n}@example.org")
        writeback_user(rt, user)  # NUL too: RFC 4514's \00 (ldap3's escape_rdn made it an invalid DN)
        written.append(name)
        tree.conn.search(user_dn(source, name), "(objectClass=*)", ldap3.BASE, attributes=["uid"])
        assert tree.conn.response[0]["attributes"]["uid"] == [name], name  # at its own name, literally
    new = [entry for key, entry in _entries(tree).items() if key not in before]
    assert sorted(v for entry in new for v in entry["uid"]) == sorted(written)  # and nowhere else
    assert len(new) == len(written) == len(names)
    report.add("inputs", target="LDAP injection: RDN values past SCIM (NUL, edges)", tried=len(names))
