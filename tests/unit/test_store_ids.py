"""Store ids: canonical UUID text, as every route and the LDAP sync's IdMap expect, and
time-ordered, which is what keeps a bulk load's index writes at the end of each index."""

from __future__ import annotations

import time
import uuid

from bridge.store.models import new_id


def test_ids_are_canonical_uuid_text_of_version_7() -> None:
    ids = [new_id() for _ in range(1000)]
    for value in ids:
        parsed = uuid.UUID(value)
        assert str(parsed) == value  # lower case, hyphens: what comes back as itself
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
    assert len(set(ids)) == len(ids)


def test_ids_made_one_after_another_sort_in_that_order() -> None:
    ids = [new_id() for _ in range(20_000)]
    assert ids == sorted(ids)
    # ... and the order is the time's: the first 48 bits are milliseconds since 1970
    first_ms = int(ids[0].replace("-", "")[:12], 16)

    assert abs(first_ms - time.time() * 1000) < 60_000
