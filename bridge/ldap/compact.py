"""Flat sets, maps and lists for what a full sync keeps for the whole run.

A full sync keeps the stable id of each user it saw (for the deletion check) and
each user's id by DN (to resolve the groups' members). As a ``set`` of ``str`` and
a ``dict`` of ``str`` those cost about 350 bytes a user: 350 MB at 1,000,000 users,
on top of the rest. Here a key is kept as two independent 64-bit hashes in
``array``s (16 bytes) plus its slot in an open-addressing table (an ``array`` at
most half full: 4 to 8 bytes), and a store id (a UUID) as its 16 bytes in one
``bytearray``: about 22 bytes a user in the set, 38 in the map, and no Python object
per key, not even while looking one up. A key matches only when both hashes do: two
keys taken for one are about 1 in 10^26 at 1,000,000 users. (One 64-bit hash was 3 in
10^8: in the set a user who left would have stayed active, full sync after full sync,
since the same ids collide every run; in the map a member DN would have resolved to
another user.)

The groups of a full scan are read whole before any is written (the deletion guard
decides first) and walked twice; with their member DNs they are kept ``Packed``:
zlib-compressed pickles of a few hundred groups each.
"""

from __future__ import annotations

import hashlib
import pickle
import struct
import zlib
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TypeVar, overload

T = TypeVar("T")


_TWO_64 = struct.Struct(">QQ").unpack  # a 128-bit digest as its two halves, in one call
_BLAKE2B = hashlib.blake2b


def key_hashes(key: str) -> tuple[int, int]:
    """Two independent 64-bit hashes of ``key`` (one 128-bit digest split), the same in
    every process and run (``hash`` is salted)."""
    return _TWO_64(_BLAKE2B(key.encode("utf-8", "surrogatepass"), digest_size=16).digest())


class _Keys:
    """Keys as their two hashes, in insertion order (slots), and an open-addressing hash
    table of slots kept as they are appended: an ``array`` of slot + 1 (0: empty), at
    most half full, probed linearly from the first hash. About 4-8 bytes a key for the
    table (8 MB at 1,000,000 keys), no Python object per key at any time. (A sorted index
    built on the first lookup cost a ``sorted(range(n), key=...)`` of 1,000,000 tuples:
    225 MB of short-lived objects whose memory the process kept.)"""

    _MIN_TABLE = 8

    def __init__(self) -> None:
        self.first, self.second = array("Q"), array("Q")
        self._table = array("I", [0]) * self._MIN_TABLE
        self._mask = self._MIN_TABLE - 1
        self._used = 0  # table entries in use (distinct keys)

    def append(self, key: str) -> None:
        """Append ``key``'s hashes as a new slot; a key appended again answers its last slot."""
        one, two = key_hashes(key)
        slot = len(self.first)
        self.first.append(one)
        self.second.append(two)
        at = self._find(one, two)
        if self._table[at]:
            self._table[at] = slot + 1  # the same key again: the last slot wins
            return
        self._table[at] = slot + 1
        self._used += 1
        if 2 * self._used > len(self._table):
            self._grow()

    def _find(self, one: int, two: int) -> int:
        """The table index holding the key (one, two), or the empty one it would go to."""
        table, first, second, mask = self._table, self.first, self.second, self._mask
        at = one & mask
        while (held := table[at]) and not (first[held - 1] == one and second[held - 1] == two):
            at = (at + 1) & mask
        return at

    def _grow(self) -> None:
        old = self._table
        self._table = array("I", [0]) * (2 * len(old))
        self._mask = len(self._table) - 1
        table, first, mask = self._table, self.first, self._mask
        for held in old:
            if held:
                at = first[held - 1] & mask
                while table[at]:
                    at = (at + 1) & mask
                table[at] = held

    def slot(self, key: str) -> int | None:
        """The last slot the key was appended at, or None."""
        held = self._table[self._find(*key_hashes(key))]
        return held - 1 if held else None

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


def _uuid_text(digits: str) -> str:
    """32 hex digits as a UUID's canonical text (what ``str(uuid.UUID(...))`` gives)."""
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def _uuid_bytes(value: str) -> bytes | None:
    """The 16 bytes of a UUID in its canonical text (lower-case, hyphens), else None: only
    a value that comes back as itself is kept as bytes. (uuid.UUID's parsing cost a full
    sync of 100,000 users about 0.4 s of CPU.)"""
    if len(value) != 36:
        return None
    try:
        raw = bytes.fromhex(value.replace("-", ""))
    except ValueError:
        return None
    return raw if len(raw) == 16 and _uuid_text(raw.hex()) == value else None


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
        raw = _uuid_bytes(value)
        if raw is None:
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
        return _uuid_text(self._values[slot * 16:slot * 16 + 16].hex())

    @overload
    def get(self, key: str, /) -> str | None: ...

    @overload
    def get(self, key: str, default: str | T, /) -> str | T: ...

    def get(self, key: str, default: object = None, /) -> object:
        """``self[key]``, or ``default``: one hash of the key (Mapping.get would raise and catch)."""
        if key in self._other:
            return self._other[key]
        slot = self._slot(key)
        return default if slot is None else _uuid_text(self._values[slot * 16:slot * 16 + 16].hex())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and (key in self._other or self._slot(key) is not None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._other)

    def __len__(self) -> int:
        return len(self._keys) + len(self._other)


class Packed(Sequence[T]):
    """A list kept as zlib-compressed pickles of ``chunk`` items each (the last chunk
    stays a plain list until full), for what a sync reads once and walks a chunk at a
    time: the groups of a full scan with their member DNs (1,000,000 DNs are about 96 MB
    as ``str``s, a few MB packed). Indexing or slicing unpacks the chunks it touches, so
    walk it in slices aligned on ``chunk`` (``bridge.store.among.in_chunks``) to unpack
    each chunk once. Items must pickle; they come back as copies."""

    def __init__(self, chunk: int, items: Iterable[T] = ()):
        if chunk < 1:
            raise ValueError("chunk must be at least 1")
        self.chunk = chunk
        self._packed: list[bytes] = []
        self._tail: list[T] = []
        self.extend(items)

    def append(self, item: T) -> None:
        self._tail.append(item)
        if len(self._tail) >= self.chunk:
            self._packed.append(zlib.compress(pickle.dumps(self._tail, protocol=pickle.HIGHEST_PROTOCOL), 1))
            self._tail = []

    def extend(self, items: Iterable[T]) -> None:
        for item in items:
            self.append(item)

    def __iadd__(self, items: Iterable[T]) -> Packed[T]:
        self.extend(items)
        return self

    def __len__(self) -> int:
        return len(self._packed) * self.chunk + len(self._tail)

    def _chunk(self, number: int) -> list[T]:
        if number == len(self._packed):
            return self._tail
        items: list[T] = pickle.loads(zlib.decompress(self._packed[number]))
        return items

    def __iter__(self) -> Iterator[T]:
        for number in range(len(self._packed) + 1):
            yield from self._chunk(number)

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> list[T]: ...

    def __getitem__(self, index: int | slice) -> T | list[T]:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return [self[i] for i in range(start, stop, step)]
            out: list[T] = []
            for number in range(start // self.chunk, (stop - 1) // self.chunk + 1 if stop > start else 0):
                base = number * self.chunk
                out += self._chunk(number)[max(start - base, 0):stop - base]
            return out
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("Packed index out of range")
        return self._chunk(index // self.chunk)[index % self.chunk]
