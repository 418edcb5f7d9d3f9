"""The deletion guard: a sync that would remove too much stops and reports instead.

A wrong search base, an expired service account that suddenly sees nothing, or
a half-migrated directory all look like "everybody left". Deactivating on that
evidence locks out a company, so past a threshold the sync applies none of its
deactivations and waits for an operator (``dirbridge sync SOURCE --approve-deletions``).
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.config import DeletionGuard


@dataclass(frozen=True)
class GuardInput:
    full_scan: bool
    scanned: int  # entries a full scan returned
    active_users: int  # this source's active users before the sync
    would_remove_users: int  # not counting those an operator approved
    groups: int
    would_remove_groups: int


def trips(guard: DeletionGuard, given: GuardInput) -> str | None:
    """Why the guard stops this sync, or None when it may proceed."""
    removes = given.would_remove_users or given.would_remove_groups
    if given.full_scan and given.scanned < guard.min_entries and removes:
        return (f"the directory returned {given.scanned} entries, fewer than "
                f"deletion_guard.min_entries = {guard.min_entries}")
    for what, count, total in (("users", given.would_remove_users, given.active_users),
                               ("groups", given.would_remove_groups, given.groups)):
        if count == 0:
            continue
        if count > guard.max_count:
            return f"the sync would remove {count} {what}, more than deletion_guard.max_count = {guard.max_count}"
        share = 100.0 * count / total if total else 100.0
        if share > guard.max_percent:
            return (f"the sync would remove {count} of {total} {what} ({share:.1f}%), more than "
                    f"deletion_guard.max_percent = {guard.max_percent:g}%")
    return None
