"""The directory entries a write-back created (``writeback_entries``), by the entry's
stable id: what write-back may modify, rename or delete, and nothing else. Written only
here; bridge.ldap.writeback reads and asks the directory."""

from __future__ import annotations

from sqlalchemy import delete

from bridge.store.db import Store
from bridge.store.models import WritebackEntry


def remember(store: Store, source: str, kind: str, resource_id: str, entry_id: str, dn: str) -> None:
    """Record that ``source``'s entry ``entry_id`` at ``dn`` is the write-back of the
    resource (replacing a stale row of the same entry id, which the directory reused)."""
    with store.write() as session:
        session.execute(delete(WritebackEntry).where(WritebackEntry.ldap_source == source,
                                                     WritebackEntry.entry_id == entry_id))
        row = session.get(WritebackEntry, (source, kind, resource_id))
        if row is None:
            session.add(WritebackEntry(ldap_source=source, kind=kind, resource_id=resource_id,
                                       entry_id=entry_id, dn=dn))
        else:
            row.entry_id, row.dn = entry_id, dn


def moved(store: Store, source: str, kind: str, resource_id: str, dn: str) -> None:
    """The recorded entry is now at ``dn`` (renamed or moved in the directory)."""
    with store.write() as session:
        stored = session.get(WritebackEntry, (source, kind, resource_id))
        if stored is not None:
            stored.dn = dn


def forget(store: Store, source: str, kind: str, resource_id: str) -> None:
    with store.write() as session:
        session.execute(delete(WritebackEntry).where(
            WritebackEntry.ldap_source == source, WritebackEntry.kind == kind,
            WritebackEntry.resource_id == resource_id))
