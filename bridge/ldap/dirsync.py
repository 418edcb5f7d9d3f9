"""Deletions on Active Directory, read with the DirSync control (1.2.840.113556.1.4.841).

A deleted AD object leaves the synced OUs for ``CN=Deleted Objects`` as a tombstone
(``isDeleted=TRUE``, objectGUID kept), so the uSNChanged change scan of
``users_base`` never sees it go. DirSync hands out every object changed since a
cookie, tombstones included; asking only for ``(isDeleted=TRUE)`` and the
``objectGUID`` makes each answer "what was deleted since the last run", and the
GUID maps it to the user or group it was synced as.

The cookie is opaque bytes (about 100 on a single DC: too long for
``SyncRun.high_water_mark``), so it is stored base64 in the run's ``detail`` beside
the uSNChanged mark of the same run, and is taken at the start of every run that
stores it: a deletion during a scan is reported by the next run, never lost.
DirSync needs the "Replicating Directory Changes" right on the domain.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass, field

import ldap3
from ldap3.core.exceptions import LDAPException
from sqlalchemy import select

from bridge.services.runs import COMPLETE
from bridge.store.db import Store
from bridge.store.models import SyncRun

#: the run detail key of the cookie
COOKIE_KEY = "dirsync_cookie"
#: tombstones only: anything else changed comes from the uSNChanged scan
DELETED_FILTER = "(isDeleted=TRUE)"
#: answers per run at most (each up to the server's own page size): a stuck cookie must not loop
MAX_ROUNDS = 100_000


class DirSyncFailed(LDAPException):  # type: ignore[misc]  # ldap3 ships no types
    """The server refused DirSync (mostly: the account lacks the replication right)."""


@dataclass
class Deletions:
    #: objectGUIDs (as UUID text, like the synced source ids) deleted since the cookie
    source_ids: set[str] = field(default_factory=set)
    cookie: bytes = b""


def naming_context(conn: ldap3.Connection) -> str:
    """The domain's root DN (DirSync works on a naming context root only)."""
    conn.search("", "(objectClass=*)", ldap3.BASE, attributes=["defaultNamingContext"])
    values = (conn.response[0].get("attributes") or {}).get("defaultNamingContext") if conn.response else None
    if not values:
        raise DirSyncFailed("the server's root DSE has no defaultNamingContext: not Active Directory?")
    return str(values[0] if isinstance(values, list) else values)


def read_deletions(conn: ldap3.Connection, cookie: bytes | None) -> Deletions:
    """Objects deleted since ``cookie`` (None: from the start, to get a cookie)."""
    try:
        base = naming_context(conn)
        sync = conn.extend.microsoft.dir_sync(base, DELETED_FILTER, attributes=["objectGUID", "isDeleted"],
                                              cookie=cookie)
        found = Deletions()
        for _ in range(MAX_ROUNDS):
            for entry in sync.loop() or []:
                if entry.get("type") != "searchResEntry":
                    continue
                raw = entry.get("raw_attributes") or {}
                deleted = [bytes(v).upper() for v in raw.get("isDeleted") or []]
                guid = (raw.get("objectGUID") or [b""])[0]
                if deleted == [b"TRUE"] and len(guid) == 16:
                    found.source_ids.add(str(uuid.UUID(bytes_le=bytes(guid))))
            if not sync.more_results:
                break
        found.cookie = bytes(sync.cookie or b"")
        return found
    except DirSyncFailed:
        raise
    except LDAPException as exc:
        raise DirSyncFailed(f"DirSync refused ({type(exc).__name__}: {exc}); the bind account needs "
                            f"'Replicating Directory Changes' on the domain") from None


def encode_cookie(cookie: bytes) -> str:
    return base64.b64encode(cookie).decode("ascii")


def last_cookie(store: Store, source: str) -> bytes | None:
    """The cookie of the run ``last_mark`` continues from (the latest complete real run
    with a mark); None when that run took none (DirSync just turned on): sync full."""
    with store.read() as session:
        detail = session.scalar(
            select(SyncRun.detail)
            .where(SyncRun.source == source, SyncRun.dry_run.is_(False), SyncRun.status.in_(COMPLETE),
                   SyncRun.high_water_mark.is_not(None))
            .order_by(SyncRun.id.desc()).limit(1))
    text = (detail or {}).get(COOKIE_KEY)
    if not text:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
