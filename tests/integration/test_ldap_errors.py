"""LDAP errors in plain words, against real servers: what happened and what to do,
naming the key and the value, for each mistake an IT admin makes on the first day."""

from __future__ import annotations

import time

from bridge.config import load_config_data
from bridge.ldap.connection import check_bind, connect
from bridge.ldap.sync import run_sync
from tests.fixtures.net import Listener, free_port
from tests.fixtures.slapd import source_settings
from tests.integration.test_ldap_sync import runtime_for, users_by_name


def source_of(settings: dict):  # type: ignore[no-untyped-def]
    return load_config_data({"ldap": {"sources": [settings]}}).ldap.sources[0]


def test_a_refused_bind_names_the_dn_and_both_keys(slapd) -> None:
    for wrong in ({"bind_password": "not-it"}, {"bind_dn": "cn=nobody,dc=example,dc=org"}):
        ok, message = check_bind(source_of({**source_settings(slapd), **wrong}))
        bind_dn = wrong.get("bind_dn", slapd.admin_dn)
        assert not ok and f"refused the bind of {bind_dn!r}" in message
        assert "bind_dn and bind_password of [[ldap.sources]] corp" in message
        assert "LDAPInvalidCredentialsResult" not in message


def test_every_url_tried_is_named_with_its_reason_and_it_is_quick(slapd) -> None:
    refused, unknown = f"ldap://127.0.0.1:{free_port()}", "ldap://no-such-host.invalid:389"
    started = time.monotonic()
    ok, message = check_bind(source_of(source_settings(slapd, url=[refused, unknown])))
    took = time.monotonic() - started
    assert not ok and message.startswith("cannot reach the directory of corp: ")
    assert f"{refused}: connection refused" in message
    assert f"{unknown}: the host name does not resolve" in message
    assert took < 4, took  # not ldap3's pool loop of 10 s
    # the first URL refused, the second answers: connected to the second
    conn = connect(source_of(source_settings(slapd, url=[refused, slapd.url])))
    try:
        assert conn.bound and str(conn.server.host) == "127.0.0.1" and conn.server.port == slapd.port
    finally:
        conn.unbind()


def test_an_untrusted_certificate_says_to_set_the_ca_file(slapd_tls) -> None:
    other = str(slapd_tls.tls.other_ca_file)
    cases = [
        ({"url": slapd_tls.ldaps_url, "tls": {"mode": "ldaps", "ca_file": other}},
         f"tls.ca_file {other!r} did not sign it"),
        ({"url": slapd_tls.ldaps_url, "tls": {"mode": "ldaps"}}, "set tls.ca_file to the CA that signed it"),
        ({"tls": {"mode": "starttls", "ca_file": other}}, f"tls.ca_file {other!r} did not sign it"),
    ]
    for settings, advice in cases:
        ok, message = check_bind(source_of(source_settings(slapd_tls, **settings)))
        assert not ok and "TLS certificate is not trusted" in message and advice in message, message


def test_a_ca_file_that_cannot_be_read_is_named(slapd_tls, tmp_path) -> None:
    missing = tmp_path / "nowhere" / "ca.pem"
    ok, message = check_bind(source_of(source_settings(
        slapd_tls, url=slapd_tls.ldaps_url, tls={"mode": "ldaps", "ca_file": str(missing)})))
    assert not ok and f"tls.ca_file {str(missing)!r} of [[ldap.sources]] corp cannot be read" in message
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    ok, message = check_bind(source_of(source_settings(
        slapd_tls, url=slapd_tls.ldaps_url, tls={"mode": "ldaps", "ca_file": str(garbage)})))
    assert not ok and "holds no CA certificate" in message and str(garbage) in message


def test_a_base_the_directory_lacks_is_named_by_its_key(sqlite_store, ldap_tree) -> None:
    tree = ldap_tree
    tree.add_user("based")
    typo = tree.users_base.replace("ou=people", "ou=peple")
    rt = runtime_for(sqlite_store, **source_settings(tree.server, tree, users_base=typo))
    result = run_sync(rt, "corp", full=True)
    assert result.status == "failed" and result.counts.deactivated == 0
    assert f"users_base {typo!r} does not exist in the directory" in (result.error or "")
    assert f"the nearest entry it has is {tree.base!r}" in (result.error or "")
    assert users_by_name(sqlite_store) == {}


def test_a_server_that_is_not_ldap_or_does_not_answer_is_named(slapd) -> None:
    reply = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    http, proxy, silent = Listener(reply), Listener(reply, close=False), Listener(None)
    try:
        ok, message = check_bind(source_of(source_settings(slapd, url=f"ldap://127.0.0.1:{http.port}")))
        assert not ok and "closed the connection without an LDAP answer" in message, message
        ok, message = check_bind(source_of(source_settings(slapd, url=f"ldap://127.0.0.1:{proxy.port}",
                                                          receive_timeout=2)))
        assert not ok and ("not as an LDAP server" in message or "no LDAP answer" in message), message
        started = time.monotonic()
        ok, message = check_bind(source_of(source_settings(slapd, url=f"ldap://127.0.0.1:{silent.port}",
                                                          receive_timeout=1)))
        assert not ok and "gave no LDAP answer within receive_timeout (1 s)" in message, message
        assert time.monotonic() - started < 5
    finally:
        for listener in (http, proxy, silent):
            listener.close()
