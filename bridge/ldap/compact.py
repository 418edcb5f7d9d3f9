"""Flat sets and maps for what a full sync remembers of every user it read.

A full sync keeps the stable id of each user it saw (for the deletion check) and
each user's id by DN (to resolve the groups' members). As a ``set`` of ``str`` and
a ``dict`` of ``str`` those cost about 350 bytes a user: 350 MB at 1,000,000 users,
on top of the rest. Here a key is kept as two independent 64-bit hashes in
``array``s (16 bytes) and a store id (a UUID) as its 16 bytes in one ``bytearray``:
32 bytes a user. A key matches only when both hashes do: two keys taken for one are
about 1 in 10^26 at 1,000,000 users. (One 64-bit hash was 3 in 10^8: in the set a
user who left would have stayed active, full sync after full sync, since the same ids
collide every run; in the map a member DN would have resolved to another user.)
"""

from __future__ import annotations

import hashlib
import uuid
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping


def key_hashes(key: str) -> tuple[int, int]:
    """Two independent 64-bit hashes of ``key`` (one 128-bit digest split), the same in
    every process and run (``hash`` is salted)."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    return int.from_bytes(digest[:8], "big"), int.from_bytes(digest[8:], "big")


class _Keys:
    """Keys as their two hashes, in insertion order, with a sorted index built on demand."""

    def __init__(self) -> None:
        self.first, self.second = array("Q"), array("Q")
        self._order: array[int] | None = None  # slots sorted by (first, second, slot)
        self._sorted_first = array("Q")

    def append(self, key: str) -> None:
        one, two = key_hashes(key)
        self.first.append(one)
        self.second.append(two)
        self._order = None

    def slot(self, key: str) -> int | None:
        """The last slot the key was appended at, or None."""
        if self._order is None:
            first, second = self.first, self.second
            self._order = array("Q", sorted(range(len(first)), key=lambda i: (first[i], second[i], i)))
            self._sorted_first = array("Q", (first[i] for i in self._order))
        one, two = key_hashes(key)
        at = bisect_left(self._sorted_first, one)
        found = None
        while at < len(self._sorted_first) and self._sorted_first[at] == one:
            slot = self._order[at]
            if self.second[slot] == two:
                found = slot  # the order is by slot among equals: the last wins
            at += 1
        return found

    def __len__(self) -> int:
        return len(self.first)


class IdSet:
    """A set of strings kept as their two hashes (``add`` and ``in``)."""

    def __init__(self, items: Iterable[str] = ()):
        self._keys = _Keys()
        for item in items:
            self.add(item)

    def add(self, item: str) -> None:
        self._keys.append(item)

    def __contains__(self, item: object) -> bool:
        return isinstance(item, str) and self._keys.slot(item) is not None

    def __len__(self) -> int:
        return len(self._keys)


class IdMap(Mapping[str, str]):
    """A map of strings (DN keys) to store ids, 32 bytes an entry: keys as their two
    hashes, UUID values as their 16 bytes. Any other value goes to a plain dict. A key set
    twice keeps its last value; iterating yields no keys (they are not kept), so use it
    for lookups only."""

    def __init__(self) -> None:
        self._keys = _Keys()
        self._values = bytearray()
        self._other: dict[str, str] = {}

    def __setitem__(self, key: str, value: str) -> None:
        try:
            raw = uuid.UUID(value).bytes
        except ValueError:
            raw = b""
        if len(raw) != 16 or str(uuid.UUID(bytes=raw)) != value:
            self._other[key] = value
            return
        self._keys.append(key)
        self._values += raw

    def _slot(self, key: str) -> int | None:
        return self._keys.slot(key)

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
        return len(self._keys) + len(self._other)
