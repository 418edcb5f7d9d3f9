"""Directory users' passwords changed and reset in the directory (bridge/ldap/passwords.py),
against the real servers: slapd with the ppolicy overlay, 389-DS with its global policy over
ldaps, Samba's AD DC over ldaps. Whether a password took is proved by a login bind
(``verify_password``), the way dirbridge checks it.

The policies: slapd, a ``pwdPolicy`` entry in the test's subtree named by each user's
``pwdPolicySubentry`` (8 characters, 3 in history, quality checked); 389-DS, the fixture's
global policy (8 characters, syntax checks, 3 in history); Samba, the domain's defaults
(7 characters, complexity, 24 in history) with no minimum age while this module runs.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import ldap3
import pytest

from bridge.config import ConfigError, LdapSourceConfig, load_config_data
from bridge.ldap.auth import DirectoryUnavailable, verify_password
from bridge.ldap.passwords import CODES, DirectoryPasswordRejected, change_own_password, reset_password
from tests.fixtures.net import Listener, free_port
from tests.fixtures.samba_ad import AdTree, SambaAD, ad_source
from tests.fixtures.slapd import LdapTree, source_settings, ssha

START = "Start-Pass-1x"
SECOND = "Second-Pass-2x"
THIRD = "Third-Pass-3x"
NON_BMP = "Pässwörd😀1x"
#: what each directory answers a 3-character password with: 389-DS's Password Modify says
#: only "insufficient quality" (its "at least 8 characters" goes with LDAP modifies)
TOO_SHORT = {"openldap": "too_short", "389ds": "insufficient_quality", "active_directory": "too_short"}


def source_of(settings: dict[str, Any]) -> LdapSourceConfig:
    return load_config_data({"ldap": {"sources": [settings]}}).ldap.sources[0]


@dataclass
class Directory:
    """One kind of directory under test: its source settings and how to add a user."""

    kind: str
    settings: dict[str, Any]
    add_user: Callable[[str], str]  # password -> the new user's DN

    def source(self, **passwords: bool) -> LdapSourceConfig:
        return source_of({**self.settings, "passwords": {"reset": True, **passwords}})

    def binds(self, dn: str, password: str) -> bool:
        return verify_password(self.source(), dn, password)


def _name() -> str:
    return f"pw{uuid.uuid4().hex[:8]}"


def openldap_policy(tree: LdapTree) -> str:
    """A ppolicy entry in the tree: 8 characters, 3 in history, quality checked."""
    dn = f"cn=policy,{tree.base}"
    tree.conn.add(dn, ["organizationalRole", "pwdPolicy"], {
        "cn": "policy", "pwdAttribute": "userPassword", "pwdMinLength": "8", "pwdInHistory": "3",
        "pwdCheckQuality": "2", "pwdMinAge": "0", "pwdAllowUserChange": "TRUE"})
    return dn


def openldap_reset_account(tree: LdapTree) -> tuple[str, str]:
    """The tree's ``cn=password-reset``: the fixture's ACL lets it write every userPassword."""
    dn, password = f"cn=password-reset,{tree.base}", "Reset-Account-1x"
    tree.conn.add(dn, ["organizationalRole", "simpleSecurityObject"],
                  {"cn": "password-reset", "userPassword": ssha(password)})
    return dn, password


@pytest.fixture(scope="module")
def ad_without_min_age(samba_ad: SambaAD) -> Iterator[SambaAD]:
    """Samba's domain lets a password be changed a day after it was set only (minPwdAge):
    none while this module runs, the default again after."""
    conn = samba_ad.connect()
    conn.search(samba_ad.base_dn, "(objectClass=*)", ldap3.BASE, attributes=["minPwdAge"])
    before = conn.response[0]["raw_attributes"]["minPwdAge"][0].decode()
    conn.modify(samba_ad.base_dn, {"minPwdAge": [(ldap3.MODIFY_REPLACE, ["0"])]})
    try:
        yield samba_ad
    finally:
        conn.modify(samba_ad.base_dn, {"minPwdAge": [(ldap3.MODIFY_REPLACE, [before])]})
        conn.unbind()


@pytest.fixture(params=["openldap", "389ds", "active_directory"])
def directory(request: pytest.FixtureRequest) -> Directory:
    if request.param == "openldap":
        tree: LdapTree = request.getfixturevalue("ldap_tree")
        policy = openldap_policy(tree)
        reset_dn, reset_password_ = openldap_reset_account(tree)
        settings = source_settings(tree.server, tree, bind_dn=reset_dn, bind_password=reset_password_)
        return Directory("openldap", settings,
                         lambda pw: tree.add_user(_name(), password=pw, pwdPolicySubentry=policy))
    if request.param == "389ds":
        ds_tree: LdapTree = request.getfixturevalue("ds389_tree")
        server = request.getfixturevalue("ds389")
        settings = source_settings(server, ds_tree, preset="389ds", url=server.ldaps_url,
                                   tls={"mode": "ldaps", "ca_file": str(server.tls.ca_file)})
        return Directory("389ds", settings, lambda pw: ds_tree.add_user(_name(), password=pw))
    samba = request.getfixturevalue("ad_without_min_age")
    ad_tree: AdTree = request.getfixturevalue("ad_tree")
    return Directory("active_directory", ad_source(samba, ad_tree), lambda pw: ad_tree.add_user(_name(), password=pw))


def rejected(call: Callable[[], None]) -> DirectoryPasswordRejected:
    with pytest.raises(DirectoryPasswordRejected) as caught:
        call()
    return caught.value


def plain(refusal: DirectoryPasswordRejected, *passwords: str) -> None:
    """A code of the list, a sentence, and no password in it."""
    assert refusal.code in CODES
    assert refusal.message and refusal.message.endswith(".") and str(refusal) == refusal.message
    for password in passwords:
        assert password not in refusal.message and password not in repr(refusal)


# -- a user's own change ------------------------------------------------------------


def test_a_user_changes_their_own_password(directory: Directory):
    dn = directory.add_user(START)
    change_own_password(directory.source(), dn, START, SECOND)
    assert directory.binds(dn, SECOND) and not directory.binds(dn, START)


def test_a_wrong_old_password_changes_nothing(directory: Directory):
    dn = directory.add_user(START)
    refusal = rejected(lambda: change_own_password(directory.source(), dn, "Wrong-Pass-9x", SECOND))
    assert refusal.code == "wrong_password"
    plain(refusal, "Wrong-Pass-9x", SECOND)
    assert directory.binds(dn, START) and not directory.binds(dn, SECOND)


def test_a_too_short_password_is_refused_plainly(directory: Directory):
    dn = directory.add_user(START)
    refusal = rejected(lambda: change_own_password(directory.source(), dn, START, "Ab1"))
    assert refusal.code == TOO_SHORT[directory.kind], refusal
    plain(refusal, START, "Ab1")
    assert directory.binds(dn, START) and not directory.binds(dn, "Ab1")


def test_a_password_in_history_is_refused(directory: Directory):
    dn = directory.add_user(START)
    change_own_password(directory.source(), dn, START, SECOND)
    refusal = rejected(lambda: change_own_password(directory.source(), dn, SECOND, START))
    assert refusal.code == "in_history", refusal
    plain(refusal, START, SECOND)
    assert directory.binds(dn, SECOND)


def test_non_bmp_and_non_ascii_passwords_work_end_to_end(directory: Directory):
    dn = directory.add_user(START)
    change_own_password(directory.source(), dn, START, NON_BMP)
    assert directory.binds(dn, NON_BMP)
    change_own_password(directory.source(), dn, NON_BMP, THIRD)
    assert directory.binds(dn, THIRD) and not directory.binds(dn, NON_BMP)


def test_a_dn_with_metacharacters_is_only_a_failed_bind(directory: Directory):
    dn = directory.add_user(START)
    base = dn.split(",", 1)[1]
    for bogus in (f"uid=*)(uid=*,{base}", f"cn=*,{base}", "*", "uid=a,,dc=x", f"{dn})(objectClass=*"):
        refusal = rejected(lambda bogus=bogus: change_own_password(directory.source(), bogus, START, SECOND))
        assert refusal.code == "wrong_password", bogus
    assert directory.binds(dn, START)


def test_changes_turned_off_are_refused(directory: Directory):
    dn = directory.add_user(START)
    refusal = rejected(lambda: change_own_password(directory.source(change=False), dn, START, SECOND))
    assert refusal.code == "not_allowed"
    assert directory.binds(dn, START)


# -- an admin's reset ---------------------------------------------------------------


def test_an_admin_resets_a_password_only_when_resets_are_on(directory: Directory):
    dn = directory.add_user(START)
    refusal = rejected(lambda: reset_password(directory.source(reset=False), dn, SECOND))
    assert refusal.code == "not_allowed"
    assert directory.binds(dn, START)
    reset_password(directory.source(), dn, SECOND)
    assert directory.binds(dn, SECOND) and not directory.binds(dn, START)


# -- one kind of directory ----------------------------------------------------------


def test_openldap_resets_follow_the_policy_and_the_acl(ldap_tree: LdapTree):
    policy = openldap_policy(ldap_tree)
    dn = ldap_tree.add_user(_name(), password=START, pwdPolicySubentry=policy)
    reset_dn, reset_secret = openldap_reset_account(ldap_tree)
    source = source_of(source_settings(ldap_tree.server, ldap_tree, bind_dn=reset_dn, bind_password=reset_secret,
                                       passwords={"reset": True}))
    assert rejected(lambda: reset_password(source, dn, "Ab1")).code == "too_short"
    # an account the ACL does not name may not write passwords
    other = f"cn=other,{ldap_tree.base}"
    ldap_tree.conn.add(other, ["organizationalRole", "simpleSecurityObject"],
                       {"cn": "other", "userPassword": ssha(reset_secret)})
    refusal = rejected(lambda: reset_password(source_of({**source.model_dump(mode="json"), "bind_dn": other,
                                                         "bind_password": reset_secret}), dn, SECOND))
    assert refusal.code == "not_allowed", refusal
    assert verify_password(source, dn, START)
    assert rejected(lambda: reset_password(source, f"uid=nobody,{ldap_tree.users_base}", SECOND)).code == "policy"


def test_openldap_change_over_starttls(slapd_tls):
    tree = LdapTree(slapd_tls, f"t-{uuid.uuid4().hex[:10]}")
    try:
        dn = tree.add_user(_name(), password=START)
        source = source_of(source_settings(slapd_tls, tree, tls={"mode": "starttls",
                                                                 "ca_file": str(slapd_tls.tls.ca_file)}))
        change_own_password(source, dn, START, SECOND)
        assert verify_password(source, dn, SECOND) and not verify_password(source, dn, START)
    finally:
        tree.remove()


def test_active_directory_refuses_a_change_too_soon_after_the_last(ad_without_min_age: SambaAD, ad_tree: AdTree):
    conn = ad_without_min_age.connect()
    conn.modify(ad_without_min_age.base_dn, {"minPwdAge": [(ldap3.MODIFY_REPLACE, ["-864000000000"])]})  # a day
    try:
        dn = ad_tree.add_user(_name(), password=START)
        source = source_of(ad_source(ad_without_min_age, ad_tree))
        refusal = rejected(lambda: change_own_password(source, dn, START, SECOND))
        assert refusal.code == "too_young"
        plain(refusal, START, SECOND)
        assert verify_password(source, dn, START)
    finally:
        conn.modify(ad_without_min_age.base_dn, {"minPwdAge": [(ldap3.MODIFY_REPLACE, ["0"])]})
        conn.unbind()


# -- refused before the network -----------------------------------------------------


def nowhere(preset: str = "openldap", **extra: Any) -> LdapSourceConfig:
    """A source whose URL nothing listens on: reaching it would be DirectoryUnavailable."""
    return source_of({"name": "corp", "url": f"ldap://127.0.0.1:{free_port()}", "preset": preset,
                      "bind_dn": "cn=admin,dc=example,dc=org", "bind_password": "x", "users_base": "dc=example,dc=org",
                      "tls": {"mode": "none"}, "passwords": {"reset": True}, **extra})


@pytest.mark.parametrize("preset", ["active_directory", "389ds", "freeipa"])
def test_unencrypted_sources_of_directories_that_need_tls_are_refused_before_sending(preset: str):
    source = nowhere(preset)
    for call in (lambda: change_own_password(source, "cn=u,dc=example,dc=org", START, SECOND),
                 lambda: reset_password(source, "cn=u,dc=example,dc=org", SECOND)):
        refusal = rejected(call)
        assert refusal.code == "not_allowed" and "encrypted" in refusal.message


def test_empty_and_unsendable_passwords_are_refused_before_sending():
    source, dn = nowhere(), "uid=u,dc=example,dc=org"
    assert rejected(lambda: change_own_password(source, dn, "", SECOND)).code == "must_supply_old"
    assert rejected(lambda: change_own_password(source, dn, START, "")).code == "too_short"
    assert rejected(lambda: reset_password(source, dn, "")).code == "too_short"
    assert rejected(lambda: change_own_password(source, "", START, SECOND)).code == "wrong_password"
    nul = "Pass\x00word-1x"
    assert rejected(lambda: change_own_password(source, dn, nul, SECOND)).code == "wrong_password"
    for call in (lambda: change_own_password(source, dn, START, nul), lambda: reset_password(source, dn, nul)):
        refusal = rejected(call)
        assert refusal.code == "insufficient_quality"
        plain(refusal, nul)
    for call in (lambda: change_own_password(nowhere(passwords={"change": False}), dn, START, SECOND),
                 lambda: reset_password(nowhere(passwords={"reset": False}), dn, SECOND)):
        assert rejected(call).code == "not_allowed"


def test_a_directory_that_does_not_answer_fails_within_login_timeout():
    hung = Listener()  # takes the connection, never answers
    try:
        source = nowhere(url=f"ldap://127.0.0.1:{hung.port}", login_timeout=1)
        for call in (lambda: change_own_password(source, "uid=u,dc=example,dc=org", START, SECOND),
                     lambda: reset_password(source, "uid=u,dc=example,dc=org", SECOND)):
            started = time.monotonic()
            with pytest.raises(DirectoryUnavailable) as caught:
                call()
            assert time.monotonic() - started < 2.5
            assert START not in str(caught.value) and SECOND not in str(caught.value)
    finally:
        hung.close()
    with pytest.raises(DirectoryUnavailable):  # and nothing listening at all
        change_own_password(nowhere(), "uid=u,dc=example,dc=org", START, SECOND)


def test_reset_needs_a_bind_account():
    with pytest.raises(ConfigError, match="passwords.reset"):
        nowhere(bind_dn=None, bind_password=None)
