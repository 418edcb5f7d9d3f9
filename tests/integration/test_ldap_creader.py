"""The two readers of a full scan side by side: libldap (python-ldap, bridge.ldap.creader)
and ldap3, each in the reading process of a real sync (bridge.ldap.readahead), over the
same trees of slapd, 389-DS and Samba AD, in each TLS mode the server offers. They must
hand over equal entries, fail in the same words, and leave the same store."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from bridge.config import LdapSourceConfig, load_config_data
from bridge.ldap import connection, creader
from bridge.ldap.directory import GroupEntry, UserEntry
from bridge.ldap.errors import LdapProblem, explain
from bridge.ldap.readahead import ReadAhead
from bridge.ldap.sync import run_sync
from bridge.store import Store, migrate
from bridge.store.models import Group, GroupGroupMember, GroupUserMember, User
from tests.fixtures.net import free_port
from tests.fixtures.samba_ad import BIG_GROUP_DN, BULK_BASE, BULK_USERS, ad_source
from tests.fixtures.slapd import LdapTree, source_settings
from tests.integration.test_ldap_sync import runtime_for

pytestmark = pytest.mark.skipif(not creader.available(), reason="python-ldap (the ldapc extra) is not installed")

# A value that is not UTF-8 (read as bytes by both), and names that need escaping or are not ASCII.
NOT_UTF8 = bytes([0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10]) + b"JFIF\x00\x80\x81"
ODD_NAMES = ["Smith, John", "Zoë Ünïcode-Łukasz", "a+b=c <d>; \"e\" #f\\g", " lead and trail "]


def source_of(settings: dict[str, Any], **overrides: Any) -> LdapSourceConfig:
    return load_config_data({"ldap": {"sources": [{**settings, **overrides}]}}).ldap.sources[0]


def scan(source: LdapSourceConfig, reader: str) -> tuple[list[UserEntry], list[GroupEntry]]:
    """Every user and group of a full scan, read by ``reader`` in the reading process."""
    with ReadAhead(source.model_copy(update={"reader": reader})) as feed:
        users, groups = list(feed.users()), list(feed.groups())
        assert feed.reader == reader
    return users, groups


def by_id(entry: UserEntry | GroupEntry) -> str:
    return entry.source_id


def same_scan(source: LdapSourceConfig) -> tuple[list[UserEntry], list[GroupEntry]]:
    """Both readers' scans of ``source``, asserted equal entry by entry (by id: the order of a
    search's answer is the server's to choose)."""
    c_users, c_groups = (sorted(entries, key=by_id) for entries in scan(source, "libldap"))
    users, groups = (sorted(entries, key=by_id) for entries in scan(source, "ldap3"))
    assert len(c_users) == len(users) and len(c_groups) == len(groups)
    for mine, theirs in zip(c_users, users, strict=True):
        assert mine == theirs, f"{mine} != {theirs}"
    for mine_group, their_group in zip(c_groups, groups, strict=True):
        assert mine_group == their_group, f"{mine_group} != {their_group}"
    return users, groups


def _odd_tree(tree: LdapTree, **person: Any) -> None:
    """Users whose DNs need escaping, non-ASCII and multi-valued values, a value that is not
    UTF-8, nested groups and a groupOfUniqueNames with the optional ``#'0101'B`` suffix."""
    dns = [tree.add_user(f"odd{i}", rdn=name, displayName=name, title=["Lead", "Ωmega"],
                         employeeType=["a", "b", "c"], **person)
           for i, name in enumerate(ODD_NAMES)]
    dns.append(tree.add_user("photo", jpegPhoto=NOT_UTF8, givenName="Ågot"))
    inner = tree.add_group("inner, escaped", dns[:2])
    tree.add_group("outer", [inner, *dns[2:]])
    tree.conn.add(f"cn=unique,{tree.groups_base}", ["groupOfUniqueNames"],
                  {"cn": "unique", "uniqueMember": [f"{dns[0]}#'0101'B", dns[1]]})


ODD_ATTRIBUTES = {"photo": "jpegPhoto", "kinds": "employeeType", "title": "title"}


# -- slapd --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["none", "ldaps", "starttls"])
def test_slapd_both_readers_read_the_same_entries(slapd_tls, mode):
    tree = LdapTree(slapd_tls, f"t-{uuid.uuid4().hex[:10]}")
    try:
        _odd_tree(tree)
        url = slapd_tls.ldaps_url if mode == "ldaps" else slapd_tls.url
        tls = {"mode": mode} if mode == "none" else {"mode": mode, "ca_file": str(slapd_tls.tls.ca_file)}
        users, groups = same_scan(source_of(source_settings(slapd_tls, tree, url=url, tls=tls,
                                                            attributes=ODD_ATTRIBUTES, page_size=3)))
    finally:
        tree.remove()
    by_name = {u.display_name: u for u in users}
    assert set(ODD_NAMES) <= set(by_name)
    assert by_name["Zoë Ünïcode-Łukasz"].attributes["title"] == ["Lead", "Ωmega"]
    assert by_name["Smith, John"].attributes["kinds"] == ["a", "b", "c"]
    photo = next(u for u in users if u.user_name == "photo")
    assert photo.given_name == "Ågot" and photo.attributes["photo"] == NOT_UTF8.decode("utf-8", "replace")
    assert {g.name: len(g.member_dns) for g in groups} == {"inner, escaped": 2, "outer": 4, "unique": 2}


def test_slapd_seed_both_readers(slapd):
    users, groups = same_scan(source_of(source_settings(slapd)))
    assert len(users) >= 10 and groups


def test_a_full_sync_through_each_reader_leaves_the_same_store(slapd, tmp_path):
    def synced(reader: str) -> tuple[Any, ...]:
        store = Store(f"sqlite:///{tmp_path / reader}.sqlite3")
        migrate.upgrade(store.engine)
        rt = runtime_for(store, **source_settings(slapd), reader=reader)
        result = run_sync(rt, "corp", full=True)
        assert result.status == "ok", result.error
        assert result.reader == reader
        with store.read() as session:
            users = sorted(session.execute(select(
                User.source_id, User.user_name, User.display_name, User.given_name, User.family_name,
                User.email, User.active, User.ldap_dn, User.attributes)).all(), key=repr)
            by_id = dict(session.execute(select(User.id, User.source_id)).all())
            groups = sorted(session.execute(select(Group.source_id, Group.display_name, Group.ldap_dn)).all(), key=repr)
            by_id.update(session.execute(select(Group.id, Group.source_id)).all())
            user_members = sorted((by_id[g], by_id[u]) for g, u in session.execute(
                select(GroupUserMember.group_id, GroupUserMember.user_id)))
            group_members = sorted((by_id[g], by_id[c]) for g, c in session.execute(
                select(GroupGroupMember.group_id, GroupGroupMember.child_group_id)))
        store.dispose()
        return users, groups, user_members, group_members, result.counts.as_dict()

    assert synced("libldap") == synced("ldap3")


# -- errors, said the same way -------------------------------------------------------------


def _ldap3_error(source: LdapSourceConfig) -> str:
    with pytest.raises(Exception) as caught:
        connection.connect(source)
    return explain(caught.value, source)


def _libldap_error(source: LdapSourceConfig) -> str:
    with pytest.raises(Exception) as caught:
        creader.connect(source)
    return explain(caught.value, source)


def test_errors_of_the_connection_are_said_as_the_ldap3_path_says_them(slapd_tls, tmp_path):
    server = slapd_tls
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("no certificate here\n")
    cases = {
        "wrong password": source_settings(server, bind_password="wrong"),
        "refused": source_settings(server, url=f"ldap://127.0.0.1:{free_port()}"),
        "other CA, ldaps": source_settings(server, url=server.ldaps_url,
                                           tls={"mode": "ldaps", "ca_file": str(server.tls.other_ca_file)}),
        "other CA, starttls": source_settings(server, tls={"mode": "starttls",
                                                           "ca_file": str(server.tls.other_ca_file)}),
        "system store, ldaps": source_settings(server, url=server.ldaps_url, tls={"mode": "ldaps"}),
        "CA file not PEM": source_settings(server, url=server.ldaps_url,
                                           tls={"mode": "ldaps", "ca_file": str(not_pem)}),
    }
    for what, settings in cases.items():
        source = source_of(settings)
        assert _libldap_error(source) == _ldap3_error(source), what
    # TLS verification off is said explicitly, and then binds.
    unverified = source_of(source_settings(server, url=server.ldaps_url, tls={"mode": "ldaps", "verify": False}))
    conn, host = creader.connect(unverified)
    conn.unbind_ext_s()
    assert host == "127.0.0.1"


def test_a_missing_base_fails_the_sync_in_the_same_words(slapd, tmp_path):
    errors = []
    for reader in ("libldap", "ldap3"):
        store = Store(f"sqlite:///{tmp_path / reader}.sqlite3")
        migrate.upgrade(store.engine)
        rt = runtime_for(store, **source_settings(slapd, users_base=f"ou=nobody,{slapd.base_dn}"), reader=reader)
        result = run_sync(rt, "corp", full=True)
        store.dispose()
        assert result.status == "failed"
        errors.append(result.error)
    assert errors[0] == errors[1] and "users_base" in errors[0]


def test_reader_libldap_without_python_ldap_is_a_configuration_problem(slapd, monkeypatch):
    source = source_of(source_settings(slapd), reader="libldap")
    assert creader.chosen(source) == "libldap"
    assert creader.chosen(source.model_copy(update={"reader": "ldap3"})) == "ldap3"
    monkeypatch.setattr(creader, "ldap", None)
    assert creader.chosen(source.model_copy(update={"reader": "auto"})) == "ldap3"
    with pytest.raises(LdapProblem, match="needs python-ldap"):
        creader.chosen(source)


# -- 389-DS ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["none", "ldaps", "starttls"])
def test_389ds_both_readers_read_the_same_entries(ds389, mode):
    tree = LdapTree(ds389, f"t-{uuid.uuid4().hex[:10]}")  # type: ignore[arg-type]  # duck-typed server
    try:
        _odd_tree(tree)
        tree.add_user("locked", nsAccountLock="true")
        url = ds389.ldaps_url if mode == "ldaps" else ds389.url
        tls = {"mode": mode} if mode == "none" else {"mode": mode, "ca_file": str(ds389.tls.ca_file)}
        users, groups = same_scan(source_of(source_settings(ds389, tree, preset="389ds", url=url, tls=tls,
                                                            attributes=ODD_ATTRIBUTES, page_size=4)))
    finally:
        tree.remove()
    assert not next(u for u in users if u.user_name == "locked").active
    assert len(groups) == 3
    seed_users, _ = same_scan(source_of(source_settings(ds389, preset="389ds")))  # the seed, locked user included
    assert not all(u.active for u in seed_users)


# -- Samba AD ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["ldaps", "starttls"])
def test_samba_both_readers_read_the_same_entries_and_ranges(samba_ad, ad_tree, mode):
    dns = [ad_tree.add_user(f"o{i}", displayName=name, title="Ωmega") for i, name in enumerate(ODD_NAMES[:2])]
    dns.append(ad_tree.add_user("off", disabled=True, givenName="Ågot"))
    escaped = f"CN=Smith\\, Jane,{ad_tree.users_base}"  # a DN that needs an escape
    ad_tree.conn.add(escaped, ["top", "person", "organizationalPerson", "user"],
                     {"sAMAccountName": "jsmith2", "sn": "Smith", "userAccountControl": "544"})
    inner = ad_tree.add_group("inner", [dns[0], escaped])
    ad_tree.add_group("outer", [inner, *dns[1:]])
    url = samba_ad.url if mode == "ldaps" else f"ldap://{samba_ad.address}"
    tree_source = source_of(ad_source(samba_ad, ad_tree, url=url, tls={"mode": mode, "ca_file": str(samba_ad.ca_file)},
                                      page_size=2))
    users, groups = same_scan(tree_source)
    assert {u.user_name: u.active for u in users}["off"] is False
    assert all(len(u.source_id) == 36 for u in users)  # objectGUID (binary) shown as a UUID, by both
    assert {g.name: len(g.member_dns) for g in groups} == {"inner": 2, "outer": 3}
    if mode == "ldaps":  # the bulk OU once: 1,600 users and a group whose members come in ranges
        bulk_users, bulk_groups = same_scan(source_of(ad_source(samba_ad)))
        assert len(bulk_users) == BULK_USERS
        (big,) = [g for g in bulk_groups if g.dn == BIG_GROUP_DN]
        assert len(big.member_dns) == len(set(big.member_dns)) == BULK_USERS
        assert BULK_BASE in big.dn
