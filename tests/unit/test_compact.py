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
    assert all(user_ids.get(key) == value for key, value in ids.items())  # get answers as [] does
    assert user_ids["uid=dry"] == "new:abc" and "uid=nobody" not in user_ids and user_ids.get("uid=x") is None
    assert user_ids.get("uid=dry", "-") == "new:abc" and user_ids.get("uid=x", "-") == "-"
    user_ids["uid=u1,ou=people"] = ids["uid=u2,ou=people"]  # set again: the last value wins
    assert user_ids["uid=u1,ou=people"] == ids["uid=u2,ou=people"]
    assert len(user_ids) == 1002


def test_id_map_gives_back_every_value_as_it_was_set():
    """Only a UUID's canonical text is kept as 16 bytes; anything that reads as a UUID but
    is spelt otherwise (upper case, braces, no hyphens, spaces, a URN) comes back as set."""
    canonical = str(uuid.uuid4())
    spellings = [canonical, canonical.upper(), "{" + canonical + "}", canonical.replace("-", ""),
                 " " + canonical[1:], canonical[:8] + " " + canonical[9:], "urn:uuid:" + canonical,
                 canonical[:35] + "g", canonical[:35] + "\u0660", "", "new:1"]
    user_ids = IdMap()
    for i, value in enumerate(spellings):
        user_ids[f"uid=u{i}"] = value
    assert [user_ids[f"uid=u{i}"] for i in range(len(spellings))] == spellings
    assert len(user_ids._values) == 16  # the canonical one only


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


def test_set_and_map_agree_with_set_and_dict_through_growth_and_collisions(monkeypatch):
    """Thousands of keys, every one set twice, half of them with colliding first hashes
    (forced): the table grows many times and probes long runs, and still answers like a
    ``set`` and a ``dict`` (the last value set wins)."""
    import bridge.ldap.compact as compact

    real = compact.key_hashes
    monkeypatch.setattr(compact, "key_hashes",
                        lambda key: (7 if key.endswith("0") else real(key)[0], real(key)[1]))
    keys = [f"uid=u{i},ou=people" for i in range(3000)]
    first, last = {k: str(uuid.uuid4()) for k in keys}, {k: str(uuid.uuid4()) for k in keys}
    seen, user_ids = IdSet(), IdMap()
    for values in (first, last):
        for key in keys:
            seen.add(key)
            user_ids[key] = values[key]
    assert all(key in seen and user_ids[key] == last[key] for key in keys)
    assert not any(f"uid=x{i},ou=people" in seen or f"uid=x{i}0,ou=people" in user_ids for i in range(300))
    assert len(seen) == 6000 and len(user_ids) == 6000  # slots appended, as before


def test_lookups_allocate_nothing_per_key():
    """The first lookup in a full set or map builds no index of Python objects: it cost a
    ``sorted`` of a tuple per key (225 MB at 1,000,000 users, kept by the process)."""
    import tracemalloc

    seen, user_ids = IdSet(), IdMap()
    for i in range(20_000):
        seen.add(f"entry-{i}")
        user_ids[f"uid=u{i},ou=people"] = str(uuid.uuid4())
    tracemalloc.start()
    try:
        assert "entry-7" in seen and "entry-x" not in seen and "uid=u7,ou=people" in user_ids
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20_000  # bytes: a few hashes and digests, not 20,000 of anything


def test_packed_is_a_list_walked_a_chunk_at_a_time():
    from bridge.ldap.compact import Packed
    from bridge.ldap.directory import GroupEntry

    entries = [GroupEntry(f"id{g}", f"cn=g{g},ou=groups", f"g{g}", [f"uid=u{i},ou=people" for i in range(g)])
               for g in range(45)]
    packed = Packed(10, entries[:40])
    packed += entries[40:]
    assert len(packed) == 45 and list(packed) == entries
    assert packed[0:10] == entries[0:10] and packed[40:50] == entries[40:50] and packed[5:33] == entries[5:33]
    assert packed[-1] == entries[-1] and packed[::7] == entries[::7] and packed[30:5] == []
    assert len(packed._packed) == 4 and len(packed._tail) == 5  # only the tail is kept as objects
