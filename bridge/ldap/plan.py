"""What a sync did or, in a dry run, would do: counts, the detailed plan, the result."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Counts:
    added: int = 0
    updated: int = 0
    deactivated: int = 0
    unchanged: int = 0
    errors: int = 0
    deleted: int = 0  # users deleted (deletion = "delete")
    groups_added: int = 0
    groups_updated: int = 0
    groups_removed: int = 0
    memberships_added: int = 0
    memberships_removed: int = 0
    unresolved_members: int = 0
    scanned: int = 0
    users_read: int = 0  # of ``scanned``: the user entries (the next full run's expected total)

    def add(self, other: Counts) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class Plan:
    """The detailed plan of a dry run (a real run keeps only counts and removals)."""

    adds: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    removals: list[dict[str, Any]] = field(default_factory=list)
    group_adds: list[dict[str, Any]] = field(default_factory=list)
    group_updates: list[dict[str, Any]] = field(default_factory=list)
    group_removals: list[dict[str, Any]] = field(default_factory=list)
    member_changes: list[dict[str, Any]] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"+ user {a['user_name']} ({a['dn']})" for a in self.adds]
        for u in self.updates:
            changes = ", ".join(f"{k}: {_show(v[0])} -> {_show(v[1])}" for k, v in sorted(u["changes"].items()))
            out.append(f"~ user {u['user_name']}: {changes}")
        out += [f"- user {r['user_name']} ({r['action']}; {r['dn']})" for r in self.removals]
        out += [f"+ group {g['name']} ({g['dn']})" for g in self.group_adds]
        for g in self.group_updates:
            changes = ", ".join(f"{k}: {_show(v[0])} -> {_show(v[1])}" for k, v in sorted(g["changes"].items()))
            out.append(f"~ group {g['name']}: {changes}")
        out += [f"- group {g['name']} ({g['dn']})" for g in self.group_removals]
        for m in self.member_changes:
            parts = [f"+{x}" for x in m["added"]] + [f"-{x}" for x in m["removed"]]
            out.append(f"~ members of {m['group']}: {', '.join(parts)}")
        return out


def _show(value: Any) -> str:
    return "(none)" if value is None else repr(value)


@dataclass
class SyncResult:
    run_id: int | None
    source: str
    mode: str
    dry_run: bool
    status: str  # ok | failed | guarded | approved
    counts: Counts
    plan: Plan | None = None
    guard: str | None = None
    would_remove: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    error: str | None = None
    high_water_mark: str | None = None
    #: peak memory (KiB) and CPU time of the process that read a full scan (bridge.ldap.readahead)
    reader_peak_rss_kb: int | None = None
    reader_cpu_seconds: float | None = None
    #: what read that scan: "libldap" (python-ldap) or "ldap3"
    reader: str | None = None

    def summary(self) -> str:
        c = self.counts
        text = (f"{self.source}: {self.mode} sync{' (dry run)' if self.dry_run else ''} {self.status}: "
                f"{c.added} added, {c.updated} updated, {c.deactivated} deactivated, ")
        if c.deleted:
            text += f"{c.deleted} deleted, "
        text += (f"{c.unchanged} unchanged, {c.errors} errors; groups: {c.groups_added} added, "
                 f"{c.groups_updated} updated, {c.groups_removed} removed; memberships: "
                 f"+{c.memberships_added} -{c.memberships_removed}")
        if c.unresolved_members:
            text += f"; {c.unresolved_members} member DNs outside the synced users and groups"
        return text
