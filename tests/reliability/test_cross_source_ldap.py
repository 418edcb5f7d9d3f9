"""Cross-source attacks that need a directory (real slapd, write-back on): a second IdP
(idp2) goes after the entries the first one's write-back created and the entries an
administrator made, by look-alike names, its own groups and its own deletions, and
squats a directory user's name before the sync brings it. Nothing of idp1's or the
administrator's may change; the figures (attempts, refused) go to the report."""

from __future__ import annotations

from typing import Any

import ldap3
import pytest
from sqlalchemy import select

from bridge.ldap.sync import run_sync
from bridge.ldap.writeback import group_dn, user_dn
from bridge.store.models import GroupUserMember, SourceConflict, User
from tests.fixtures.accounts import accounts_config, attempt
from tests.fixtures.slapd import source_settings, writeback_subtree
from tests.integration.test_scim_http import CORE, scim_for
from tests.reliability.conftest import Report

GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


@pytest.fixture
def config(ldap_tree):
    users_base, groups_base = writeback_subtree(ldap_tree)
    return accounts_config(scim={"clients": {"idp2": {"passwords": True}}}, ldap={"sources": [source_settings(
        ldap_tree.server, ldap_tree, writeback={"enabled": True, "users_base": users_base,
                                                "groups_base": groups_base})]})


def snapshot(tree) -> dict[str, dict[str, Any]]:
    tree.conn.search(tree.base, "(objectClass=*)", ldap3.SUBTREE, attributes=["*", "entryUUID"])
    return {e["dn"].lower(): {k: sorted(map(str, v)) if isinstance(v, list) else str(v)
                              for k, v in e["attributes"].items()}
            for e in tree.conn.response if e.get("type") == "searchResEntry"}


def test_a_second_idp_cannot_overwrite_fill_or_delete_entries_it_did_not_create(
        client, runtime, admin_headers, ldap_tree, report: Report):
    source = runtime.config.ldap.sources[0]
    idp1, idp2 = scim_for(client, runtime, "idp1"), scim_for(client, runtime, "idp2")
    victim = idp1.create_user("victim.wb", emails=[{"value": "victim@example.org", "primary": True}])
    idp1.create_user("john doe")
    idp1.post("/Groups", {"schemas": [GROUP], "displayName": "Legacy Admins", "members": [{"value": victim["id"]}]})
    ldap_tree.conn.add(user_dn(source, "outsider.wb"), ["inetOrgPerson"],
                       {"uid": "outsider.wb", "cn": "Outsider", "sn": "Admin-made", "mail": "outsider@example.org"})
    newhire = ldap_tree.add_user("newhire", password="Directory-Pass-42x", mail="newhire@example.org")
    ldap_tree.add_group("Finance", [newhire])
    before = snapshot(ldap_tree)

    refused = 0
    # look-alikes of idp1's written-back users: refused in the store already
    for name in ("ｖictim.wb", "VICTIM.WB ", "vi\u200bctim.wb", "john  doe", "John\u00a0Doe"):
        response = idp2.post("/Users", {"schemas": [CORE], "userName": name})
        assert response.status_code == 409 and "idp1" not in response.text, (name, response.json)
        refused += 1
    # a name only the directory holds (an administrator's entry): the SCIM user is idp2's,
    # the entry is not, and stays as it was
    for name in ("outsider.wb", "OUTSIDER.WB"):
        response = idp2.post("/Users", {"schemas": [CORE], "userName": name})
        if response.status_code == 201:
            outsider = response.json
        else:
            assert response.status_code == 409
        refused += 1
    # its own group of the same name as idp1's written-back group: no member lands there
    legacy = idp2.post("/Groups", {"schemas": [GROUP], "displayName": "legacy admins",
                                   "members": [{"value": outsider["id"]}]})
    assert legacy.status_code == 201
    refused += 1
    patched = idp2.patch(f"/Groups/{legacy.json['id']}", [
        {"op": "add", "path": "members", "value": [{"value": outsider["id"]}]}])
    assert patched.status_code in (200, 204)
    refused += 1
    # deleting its own look-alike objects deletes nothing of anyone else
    for path in (f"/Groups/{legacy.json['id']}", f"/Users/{outsider['id']}"):
        assert idp2.delete(path).status_code == 204
        refused += 1
    # squatting a directory user's name before the sync brings it
    squat = idp2.post("/Users", {"schemas": [CORE], "userName": "newhire", "password": "Borrowed-Keys-42x!"})
    assert squat.status_code == 201
    result = run_sync(runtime, "corp")
    assert any("scim:idp2" in e and "ldap:corp" in e for e in result.errors), result.errors
    assert attempt(client, admin_headers, "newhire", "Directory-Pass-42x").status_code == 401
    with runtime.store.read() as session:
        assert session.scalar(select(GroupUserMember).where(GroupUserMember.user_id == squat.json["id"])) is None
        assert session.scalar(select(User.source).where(User.id == squat.json["id"])) == "scim:idp2"
        kinds = sorted(session.scalars(select(SourceConflict.kind).where(SourceConflict.resolved_at.is_(None))))
    refused += 1

    after = snapshot(ldap_tree)
    for dn in (user_dn(source, "victim.wb"), user_dn(source, "john doe"), group_dn(source, "Legacy Admins"),
               user_dn(source, "outsider.wb"), newhire):
        assert after[dn.lower()] == before[dn.lower()], dn
    assert set(after) - set(before) == set()  # nothing of idp2's landed on a name others hold
    assert "writeback" in kinds and "user_name" in kinds
    tried = 5 + 2 + 2 + 2 + 1
    assert refused == tried
    report.add("inputs", target=f"write-back and squatting attacks by a second IdP "
               f"({runtime.store.engine.dialect.name}, slapd)", tried=tried, refused=refused,
               failures=tried - refused)
