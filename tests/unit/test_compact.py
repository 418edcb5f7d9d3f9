"""The flat set and map a full sync keeps of every user it read (bridge.ldap.compact)."""

from __future__ import annotations

import uuid

from bridge.ldap.compact import IdMap, IdSet


def test_id_set_answers_membership():
    seen = IdSet(["a", "b"])
    assert "a" in seen and "c" not in seen
    seen.add("c")
    assert "c" in seen and len(seen) == 3


def test_id_map_keeps_uuids_flat_and_other_values_as_they_are():
    ids = {f"uid=u{i},ou=people": str(uuid.uuid4()) for i in range(1000)}
    user_ids = IdMap()
    for key, value in ids.items():
        user_ids[key] = value
    user_ids["uid=dry"] = "new:abc"  # a dry run's placeholder
    assert all(user_ids[key] == value for key, value in ids.items())
    assert user_ids["uid=dry"] == "new:abc" and "uid=nobody" not in user_ids and user_ids.get("uid=x") is None
    user_ids["uid=u1,ou=people"] = ids["uid=u2,ou=people"]  # set again: the last value wins
    assert user_ids["uid=u1,ou=people"] == ids["uid=u2,ou=people"]
    assert len(user_ids) == 1002
