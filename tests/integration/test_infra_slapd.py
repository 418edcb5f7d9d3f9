"""The slapd fixture serves a real, seeded OpenLDAP that later tests rely on."""

from __future__ import annotations

import uuid

import ldap3
import pytest
from ldap3.utils.dn import escape_rdn

from tests.fixtures.slapd import SEED_GROUPS, SEED_PASSWORDS, dn_key


def connect(slapd, dn=None, password=None) -> ldap3.Connection:
    server = ldap3.Server(slapd.url, get_info=ldap3.NONE, connect_timeout=5)
    conn = ldap3.Connection(
        server, dn or slapd.admin_dn, password if dn else slapd.admin_password,
        client_strategy=ldap3.SYNC, raise_exceptions=False, receive_timeout=10,
    )
    assert conn.bind(), conn.result
    return conn


def norm(dn: str):
    return dn_key(dn)


@pytest.mark.parametrize("uid", sorted(SEED_PASSWORDS))
def test_seeded_users_bind_with_their_password(slapd, uid):
    conn = connect(slapd, slapd.user_dn(uid), slapd.passwords[uid])
    assert norm(conn.extend.standard.who_am_i().removeprefix("dn:")) == norm(slapd.user_dn(uid))
    conn.unbind()


def test_wrong_password_and_unknown_user_are_refused(slapd):
    server = ldap3.Server(slapd.url, get_info=ldap3.NONE)
    wrong = ldap3.Connection(server, slapd.user_dn("alice"), "not-the-password")
    assert not wrong.bind()
    assert wrong.result["description"] == "invalidCredentials"
    ghost = ldap3.Connection(server, f"uid=ghost,{slapd.users_base}", "whatever")
    assert not ghost.bind()
    assert ghost.result["description"] == "invalidCredentials"


def test_paged_search_returns_all_users_with_entry_uuid(slapd):
    conn = connect(slapd)
    entries = list(
        conn.extend.standard.paged_search(
            slapd.users_base, "(objectClass=inetOrgPerson)", attributes=["uid", "cn", "mail", "entryUUID"],
            paged_size=3, generator=True,
        )
    )
    users = {e["attributes"]["uid"][0]: e for e in entries if e["type"] == "searchResEntry"}
    assert set(SEED_PASSWORDS) <= set(users)
    uuids = {str(uuid.UUID(e["attributes"]["entryUUID"][0])) for e in users.values()}
    assert len(uuids) == len(users)


def test_memberof_is_maintained(slapd):
    conn = connect(slapd)
    assert conn.search(slapd.user_dn("alice"), "(objectClass=*)", ldap3.BASE, attributes=["memberOf"])
    assert {norm(g) for g in conn.entries[0].memberOf.values} == {norm(slapd.group_dn("admins"))}

    # A membership change made now shows on the user too.
    group = slapd.group_dn("admins")
    conn.modify(group, {"member": [(ldap3.MODIFY_ADD, [slapd.user_dn("heidi")])]})
    assert conn.result["description"] == "success", conn.result
    try:
        conn.search(slapd.user_dn("heidi"), "(objectClass=*)", ldap3.BASE, attributes=["memberOf"])
        assert norm(group) in {norm(g) for g in conn.entries[0].memberOf.values}
    finally:
        conn.modify(group, {"member": [(ldap3.MODIFY_DELETE, [slapd.user_dn("heidi")])]})
    conn.search(slapd.user_dn("heidi"), "(objectClass=*)", ldap3.BASE, attributes=["memberOf"])
    assert norm(group) not in {norm(g) for g in conn.entries[0].memberOf.values}


def test_nested_group(slapd):
    conn = connect(slapd)
    conn.search(slapd.group_dn("engineering"), "(objectClass=groupOfNames)", ldap3.BASE, attributes=["member"])
    members = {norm(m) for m in conn.entries[0].member.values}
    assert members == {norm(m) for m in SEED_GROUPS["engineering"]}
    # The nested group itself carries memberOf of its parent.
    conn.search(slapd.group_dn("developers"), "(objectClass=*)", ldap3.BASE, attributes=["memberOf"])
    assert {norm(g) for g in conn.entries[0].memberOf.values} == {norm(slapd.group_dn("engineering"))}


def test_non_ascii_and_escaped_dns_round_trip(slapd):
    conn = connect(slapd)
    juergen = slapd.user_dn("jmueller")
    smith = slapd.user_dn("jsmith")
    assert juergen == f"cn=Jürgen Müller,{slapd.users_base}"
    assert smith == f"cn={escape_rdn('Smith, John')},{slapd.users_base}"

    assert conn.search(juergen, "(objectClass=*)", ldap3.BASE, attributes=["cn", "uid", "memberOf"])
    entry = conn.entries[0]
    assert norm(entry.entry_dn) == norm(juergen)
    assert entry.cn.value == "Jürgen Müller"
    assert {norm(g) for g in entry.memberOf.values} == {norm(slapd.group_dn("developers")),
                                                         norm(slapd.group_dn("international"))}

    assert conn.search(smith, "(objectClass=*)", ldap3.BASE, attributes=["cn", "memberOf"])
    entry = conn.entries[0]
    # slapd returns its own escaping (cn=Smith\2C John): equal as a DN, not as a string.
    assert norm(entry.entry_dn) == norm(smith)
    assert norm("CN=smith\\2c JOHN , ou=People,dc=example,dc=org") == norm(smith)
    assert entry.cn.value == "Smith, John"
    assert [norm(g) for g in entry.memberOf.values] == [norm(slapd.group_dn("international"))]

    # A filter on the non-ASCII value finds it, and the group lists both DNs.
    assert conn.search(slapd.users_base, "(cn=Jürgen Müller)", attributes=["uid"])
    assert [e.uid.value for e in conn.entries] == ["jmueller"]
    conn.search(slapd.group_dn("international"), "(objectClass=*)", ldap3.BASE, attributes=["member"])
    assert {norm(m) for m in conn.entries[0].member.values} == {norm(juergen), norm(smith),
                                                                 norm(slapd.user_dn("heidi"))}


def test_accesslog_records_writes(slapd):
    conn = connect(slapd)
    dn = f"uid=log-{uuid.uuid4().hex[:8]},{slapd.users_base}"
    slapd.ldapadd(f"dn: {dn}\nobjectClass: inetOrgPerson\nuid: {dn[4:16]}\ncn: Log Test\nsn: Test\n")
    try:
        assert conn.search(slapd.accesslog_base, f"(&(objectClass=auditAdd)(reqDN={dn}))",
                           attributes=["reqType", "reqStart"])
        assert conn.entries[0].reqType.value == "add"
    finally:
        slapd.ldapdelete(dn)


def test_ldapadd_reports_errors(slapd):
    with pytest.raises(RuntimeError, match="Already exists|already exists"):
        slapd.ldapadd(f"dn: {slapd.users_base}\nobjectClass: organizationalUnit\nou: people\n")


def test_restart_keeps_data(slapd):
    dn = f"uid=restart-{uuid.uuid4().hex[:8]},{slapd.users_base}"
    slapd.ldapadd(f"dn: {dn}\nobjectClass: inetOrgPerson\nuid: restart\ncn: Restart Test\nsn: Test\n")
    try:
        slapd.restart()
        assert slapd.running
        conn = connect(slapd, slapd.user_dn("alice"), slapd.passwords["alice"])
        assert conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=["cn"])
        assert conn.search(slapd.user_dn("alice"), "(objectClass=*)", ldap3.BASE, attributes=["memberOf"])
        assert conn.entries[0].memberOf.values

        slapd.stop()
        assert not slapd.running
        refused = ldap3.Connection(ldap3.Server(slapd.url, get_info=ldap3.NONE, connect_timeout=1),
                                   raise_exceptions=False)
        with pytest.raises(ldap3.core.exceptions.LDAPSocketOpenError):
            refused.open()
    finally:
        slapd.start()
        slapd.ldapdelete(dn)
