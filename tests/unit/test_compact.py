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


def test_a_key_matches_only_when_both_hashes_do(monkeypatch):
    """Two keys whose first hashes collide (forced here) stay two keys: a user who left the
    directory is not kept for another's id, a member DN does not resolve to another user."""
    import bridge.ldap.compact as compact

    real = compact.key_hashes
    monkeypatch.setattr(compact, "key_hashes", lambda key: (42, real(key)[1]))
    seen = IdSet(["entry-kept"])
    assert "entry-kept" in seen and "entry-gone" not in seen
    user_ids = IdMap()
    present = str(uuid.uuid4())
    user_ids["uid=present,ou=people"] = present
    assert user_ids["uid=present,ou=people"] == present and "uid=absent,ou=people" not in user_ids
