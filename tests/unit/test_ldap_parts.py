"""The pure parts of the LDAP sync: DN comparison, high-water marks, the guard, presets."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bridge.config import DeletionGuard, load_config_data
from bridge.ldap.directory import RANGE_RE, is_disabled
from bridge.ldap.dn import dn_key, is_under
from bridge.ldap.guard import GuardInput, trips
from bridge.ldap.marks import MarkTracker, parse_generalized_time, since_filter_value
from bridge.ldap.presets import attribute_map


@pytest.mark.parametrize("a, b", [
    ("cn=Smith\\, John,ou=People,dc=example,dc=org", "CN=smith\\2C john, ou=people,DC=example,dc=org"),
    ("cn=Jürgen Müller,dc=x", "cn=J\\C3\\BCrgen M\\C3\\BCller,dc=x"),
    ("cn=Ops+uid=bot,dc=x", "UID=bot+cn=ops,dc=x"),
    ("cn=a\\+b,dc=x", "cn=a\\2Bb,dc=x"),
])
def test_equal_dns_have_equal_keys(a, b):
    assert dn_key(a) == dn_key(b)


def test_different_dns_differ():
    assert dn_key("cn=a\\,b,dc=x") != dn_key("cn=a,b=,dc=x")
    assert dn_key("cn=a+uid=b,dc=x") != dn_key("cn=a\\+uid\\=b,dc=x")
    assert is_under(dn_key("uid=a,ou=People,dc=x"), dn_key("ou=people,dc=x"))
    assert not is_under(dn_key("uid=a,ou=otherpeople,dc=x"), dn_key("ou=people,dc=x"))


def test_generalized_time():
    assert parse_generalized_time("20240102030405Z") == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_generalized_time("20240102030405.5Z") == datetime(2024, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)
    assert parse_generalized_time("20240102050405+0200") == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_generalized_time("yesterday") is None


def test_the_mark_never_passes_the_latest_change_seen():
    tracker = MarkTracker("timestamp")
    tracker.see("20240101000000Z")
    tracker.see("20240101000500Z")
    started = datetime(2024, 1, 1, 1, 0, tzinfo=UTC)
    assert tracker.next_mark(started, 60, None, "dc1") == "20240101000500Z"
    # Changes in flight near the scan: the overlap reaches back before the scan started.
    tracker.see("20240101005959Z")
    assert tracker.next_mark(started, 60, None, "dc1") == "20240101005900Z"
    # Nothing seen: keep the previous mark (a client clock ahead of the server skips nothing).
    assert MarkTracker("timestamp").next_mark(started, 60, "20231231000000Z", "dc1") == "20231231000000Z"


def test_usn_marks_belong_to_one_domain_controller():
    tracker = MarkTracker("usn")
    tracker.see("1500")
    tracker.see("900")
    mark = tracker.next_mark(datetime.now(UTC), 60, None, "dc1.example.org")
    assert mark == "usn:1500@dc1.example.org"
    assert since_filter_value("usn", mark, "dc1.example.org") == "1500"
    assert since_filter_value("usn", mark, "dc2.example.org") is None  # another DC: full sync


def test_guard():
    guard = DeletionGuard(max_percent=10, max_count=50, min_entries=5)
    ok = GuardInput(full_scan=True, scanned=100, active_users=100, would_remove_users=10, groups=10,
                    would_remove_groups=1)
    assert trips(guard, ok) is None
    assert "max_percent" in trips(guard, GuardInput(True, 100, 100, 11, 10, 0))
    assert "max_count" in trips(guard, GuardInput(True, 1000, 1000, 51, 10, 0))
    assert "min_entries" in trips(guard, GuardInput(True, 0, 100, 0, 10, 10))
    assert "groups" in trips(guard, GuardInput(True, 100, 100, 0, 10, 2))


def test_disabled_flags():
    assert is_disabled({"userAccountControl": ["514"]}, "userAccountControl")
    assert not is_disabled({"userAccountControl": ["512"]}, "userAccountControl")
    assert is_disabled({"nsAccountLock": ["TRUE"]}, "nsAccountLock")
    assert not is_disabled({"nsAccountLock": ["false"]}, "nsAccountLock")
    assert not is_disabled({}, "nsAccountLock")
    assert not is_disabled({"x": ["1"]}, "")


def test_range_keys():
    assert RANGE_RE.search("member;range=0-1499").groups() == ("0", "1499")
    assert RANGE_RE.search("member;range=1500-*").groups() == ("1500", "*")


def source(**extra):
    base = {"name": "ad", "url": "ldaps://dc1", "users_base": "dc=x", **extra}
    return load_config_data({"ldap": {"sources": [base]}}).ldap.sources[0]


def test_presets_and_overrides():
    ad = attribute_map(source(preset="active_directory", attributes={"user_name": "userPrincipalName",
                                                                     "costCenter": "extensionAttribute1",
                                                                     "title": ""}))
    assert ad.attr("unique_id") == "objectGUID" and ad.marker == "usn"
    assert ad.attr("user_name") == "userPrincipalName"
    assert ad.extras["costCenter"] == "extensionAttribute1" and "title" not in ad.extras
    assert "userAccountControl" in ad.user_attributes() and "*" not in ad.user_attributes()
    assert attribute_map(source(preset="389ds")).attr("disabled") == "nsAccountLock"
    freeipa = attribute_map(source(preset="freeipa"))
    assert freeipa.attr("unique_id") == "ipaUniqueID" and freeipa.marker == "timestamp"
    assert attribute_map(source()).member_attributes == ("member", "uniqueMember")


def test_csn_marks_keep_microseconds():
    tracker = MarkTracker("csn")
    tracker.see("20240101000000.123456Z#000000#000#000000")
    tracker.see("20240101000000.000001Z#000002#001#000000")
    mark = tracker.next_mark(datetime(2024, 1, 2, tzinfo=UTC), 60, None, "ldap1")
    assert mark == "20240101000000.123456Z#000000#000#000000"
    assert since_filter_value("csn", mark, "ldap1") == mark
    assert since_filter_value("timestamp", mark, "ldap1") is None  # the preset changed: full sync
    assert since_filter_value("csn", "20240101000000Z", "ldap1") is None
