"""Flat sets and maps for what a full sync remembers of every user it read.

A full sync keeps the stable id of each user it saw (for the deletion check) and
each user's id by DN (to resolve the groups' members). As a ``set`` of ``str`` and
a ``dict`` of ``str`` those cost about 350 bytes a user: 350 MB at 1,000,000 users,
on top of the rest. Here a key is kept as a 64-bit hash in an ``array`` (8 bytes)
and a store id (a UUID) as its 16 bytes in one ``bytearray``: 24 bytes a user.
Two keys of the same hash are about 3 in 10^8 at 1,000,000 users: in the set it
would keep a user that is gone (the next full sync removes it) rather than remove
one that is there; in the map one member DN would resolve to the other's user.
"""

from __future__ import annotations

import hashlib
import uuid
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping


def key_hash(key: str) -> int:
    """A 64-bit hash of ``key``, the same in every process and run (``hash`` is salted)."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


class IdSet:
    """A set of strings kept as sorted 64-bit hashes (``add`` and ``in``)."""

    def __init__(self, items: Iterable[str] = ()):
        self._hashes = array("Q")
        self._sorted = True
        for item in items:
            self.add(item)

    def add(self, item: str) -> None:
        self._hashes.append(key_hash(item))
        self._sorted = False

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, str):
            return False
        if not self._sorted:
            self._hashes = array("Q", sorted(self._hashes))
            self._sorted = True
        wanted = key_hash(item)
        at = bisect_left(self._hashes, wanted)
        return at < len(self._hashes) and self._hashes[at] == wanted

    def __len__(self) -> int:
        return len(self._hashes)


class IdMap(Mapping[str, str]):
    """A map of strings (DN keys) to store ids, 24 bytes an entry: keys as 64-bit hashes,
    UUID values as their 16 bytes. Any other value, and a key whose hash another key
    took, go to a plain dict. A key set twice keeps its last value; iterating yields
    no keys (they are not kept), so use it for lookups only."""

    def __init__(self) -> None:
        self._hashes = array("Q")
        self._values = bytearray()
        self._other: dict[str, str] = {}
        self._order: array[int] | None = None  # slots sorted by hash, built on the first lookup
        self._sorted_hashes = array("Q")

    def __setitem__(self, key: str, value: str) -> None:
        try:
            raw = uuid.UUID(value).bytes
        except ValueError:
            raw = b""
        if len(raw) != 16 or str(uuid.UUID(bytes=raw)) != value:
            self._other[key] = value
            return
        self._hashes.append(key_hash(key))
        self._values += raw
        self._order = None

    def _slot(self, key: str) -> int | None:
        if self._order is None:
            # Slots sorted by hash (the last of equal hashes wins: a key set again); no dict of
            # 1,000,000 ints, one array of their order.
            self._order = array("Q", sorted(range(len(self._hashes)), key=self._hashes.__getitem__))  # stable
            self._sorted_hashes = array("Q", (self._hashes[i] for i in self._order))
        wanted = key_hash(key)
        hashes = self._sorted_hashes
        at = bisect_left(hashes, wanted)
        if at >= len(hashes) or hashes[at] != wanted:
            return None
        while at + 1 < len(hashes) and hashes[at + 1] == wanted:
            at += 1
        return self._order[at]

    def __getitem__(self, key: str) -> str:
        if key in self._other:
            return self._other[key]
        slot = self._slot(key)
        if slot is None:
            raise KeyError(key)
        return str(uuid.UUID(bytes=bytes(self._values[slot * 16:slot * 16 + 16])))

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and (key in self._other or self._slot(key) is not None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._other)

    def __len__(self) -> int:
        return len(self._hashes) + len(self._other)
