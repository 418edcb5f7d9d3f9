"""TLS with a CA the test made (ldaps:// and StartTLS, verified by default), and bind
authentication of directory users."""

from __future__ import annotations

import pytest

from bridge.config import load_config_data
from bridge.ldap.auth import DirectoryUnavailable, verify_password
from bridge.ldap.connection import check_bind
from bridge.ldap.sync import run_sync
from tests.fixtures.net import free_port
from tests.fixtures.slapd import source_settings
from tests.integration.test_ldap_sync import runtime_for, users_by_name


def tls_source(server, mode: str, ca_file, **extra):
    url = server.ldaps_url if mode == "ldaps" else server.url
    settings = source_settings(server, url=url, tls={"mode": mode, **({"ca_file": str(ca_file)} if ca_file else {})},
                               **extra)
    return load_config_data({"ldap": {"sources": [settings]}}).ldap.sources[0]


@pytest.mark.parametrize("mode", ["ldaps", "starttls"])
def test_tls_with_the_test_ca_binds_and_syncs(sqlite_store, slapd_tls, mode):
    source = tls_source(slapd_tls, mode, slapd_tls.tls.ca_file)
    assert check_bind(source)[0]
    rt = runtime_for(sqlite_store, **source.model_dump(mode="json", exclude={"bind_password"}),
                     bind_password=slapd_tls.admin_password)
    result = run_sync(rt, "corp")
    assert result.status == "ok" and "alice" in users_by_name(sqlite_store)


@pytest.mark.parametrize("mode", ["ldaps", "starttls"])
def test_certificates_are_verified_by_default(slapd_tls, mode):
    # Another CA (or the system store, which does not know the test CA): refused.
    for ca in (slapd_tls.tls.other_ca_file, None):
        ok, detail = check_bind(tls_source(slapd_tls, mode, ca))
        assert not ok and "TLS certificate is not trusted" in detail
    # Verification off must be said explicitly.
    assert check_bind(_unverified(slapd_tls, mode))[0]


def _unverified(server, mode):
    url = server.ldaps_url if mode == "ldaps" else server.url
    settings = source_settings(server, url=url, tls={"mode": mode, "verify": False})
    return load_config_data({"ldap": {"sources": [settings]}}).ldap.sources[0]


def test_bind_authentication_of_directory_users(slapd):
    source = load_config_data({"ldap": {"sources": [source_settings(slapd)]}}).ldap.sources[0]
    assert verify_password(source, slapd.user_dn("alice"), slapd.passwords["alice"])
    assert verify_password(source, slapd.user_dn("jmueller"), slapd.passwords["jmueller"])  # non-ASCII DN and password
    assert verify_password(source, "cn=Smith\\2C John,ou=people,dc=example,dc=org", slapd.passwords["jsmith"])
    assert not verify_password(source, slapd.user_dn("alice"), "not-her-password")
    assert not verify_password(source, f"uid=ghost,{slapd.users_base}", "whatever")
    # An empty password would be an unauthenticated bind, which LDAP answers with success.
    assert not verify_password(source, slapd.user_dn("alice"), "")


def test_bind_authentication_over_tls_and_failover(slapd_tls):
    source = tls_source(slapd_tls, "ldaps", slapd_tls.tls.ca_file)
    source = source.model_copy(update={"url": [f"ldaps://127.0.0.1:{free_port()}", slapd_tls.ldaps_url]})
    assert verify_password(source, slapd_tls.user_dn("bob"), slapd_tls.passwords["bob"])
    assert not verify_password(source, slapd_tls.user_dn("bob"), "wrong")


def test_an_unreachable_directory_is_not_a_wrong_password(slapd):
    settings = source_settings(slapd, url=f"ldap://127.0.0.1:{free_port()}", connect_timeout=1)
    source = load_config_data({"ldap": {"sources": [settings]}}).ldap.sources[0]
    with pytest.raises(DirectoryUnavailable):
        verify_password(source, slapd.user_dn("alice"), slapd.passwords["alice"])
