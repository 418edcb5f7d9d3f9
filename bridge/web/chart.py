"""The sync chart of the status page: an inline SVG made here, no JavaScript library.

Per LDAP source, the last runs from left (oldest) to right (newest): on top each
run's duration as a bar coloured by its outcome, below the users it added,
updated and deactivated and its errors, stacked. Every text in it is escaped;
each bar carries a <title> (the tooltip) with the exact figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from markupsafe import Markup, escape

STATUS_COLOURS = {"ok": "#2e7d32", "approved": "#1565c0", "guarded": "#e08a00", "failed": "#c62828",
                  "interrupted": "#6d4c41", "running": "#8a94a6"}
COUNT_COLOURS = (("added", "#00acc1"), ("updated", "#7b1fa2"), ("deactivated", "#f06292"), ("errors", "#37474f"))

WIDTH, HEIGHT = 640, 236
LEFT, RIGHT = 46, 8
TOP_Y, TOP_H = 22, 80  # the duration panel
LOW_Y, LOW_H = 134, 80  # the counts panel; below it each run's mode (F full, I incremental)


@dataclass(frozen=True)
class RunPoint:
    run_id: int
    mode: str  # full | incremental
    status: str
    started_at: datetime
    seconds: float | None  # None while running
    added: int
    updated: int
    deactivated: int
    errors: int


def nice_ceiling(value: float) -> float:
    """The axis maximum: 1, 2 or 5 times a power of ten, at least ``value``."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return float(step * power)
    return float(10 * power)


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _seconds(value: float) -> str:
    if value >= 120:
        return f"{value / 60:.1f} min"
    return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"


def sync_chart(source: str, runs: Sequence[RunPoint]) -> Markup:
    """The SVG for ``runs`` (oldest first, left to right); an empty Markup when there is none.
    The legend is the page's (HTML), so that it wraps on a phone."""
    if not runs:
        return Markup("")
    plot_w = WIDTH - LEFT - RIGHT
    slot = plot_w / len(runs)
    bar_w = max(2.0, min(28.0, slot * 0.7))
    max_s = nice_ceiling(max((r.seconds or 0.0) for r in runs))
    max_n = nice_ceiling(max(r.added + r.updated + r.deactivated + r.errors for r in runs))
    label = f"Last {len(runs)} syncs of {source}: duration (top) and users added, updated, deactivated and errors"
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(label)}" '
             f'xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif" font-size="11">',
             f"<title>{escape(label)}</title>"]
    for y, h, top_label in ((TOP_Y, TOP_H, _seconds(max_s)), (LOW_Y, LOW_H, _num(max_n))):
        parts.append(f'<line x1="{LEFT}" y1="{y + h}" x2="{WIDTH - RIGHT}" y2="{y + h}" stroke="#b8c0cc"/>')
        parts.append(f'<line x1="{LEFT}" y1="{y}" x2="{WIDTH - RIGHT}" y2="{y}" stroke="#eef0f4"/>')
        parts.append(f'<text x="{LEFT - 4}" y="{y + 4}" text-anchor="end" fill="#55607a">{escape(top_label)}</text>')
        parts.append(f'<text x="{LEFT - 4}" y="{y + h}" text-anchor="end" fill="#55607a">0</text>')
    parts.append(f'<text x="{LEFT}" y="{TOP_Y - 6}" fill="#1d2433">duration</text>')
    parts.append(f'<text x="{LEFT}" y="{LOW_Y - 6}" fill="#1d2433">users changed and errors</text>')
    for i, run in enumerate(runs):
        x = LEFT + i * slot + (slot - bar_w) / 2
        when = run.started_at.strftime("%Y-%m-%d %H:%M UTC")
        took = _seconds(run.seconds) if run.seconds is not None else "running"
        tip = (f"run {run.run_id}, {run.mode}, {run.status}, {when}: {took}; {run.added} added, "
               f"{run.updated} updated, {run.deactivated} deactivated, {run.errors} errors")
        bar = max(TOP_H * (run.seconds or 0.0) / max_s, 1.5)  # a run that took no measurable time still shows
        colour = STATUS_COLOURS.get(run.status, "#8a94a6")
        parts.append(f'<rect x="{x:.1f}" y="{TOP_Y + TOP_H - bar:.1f}" width="{bar_w:.1f}" height="{bar:.1f}" '
                     f'fill="{colour}"><title>{escape(tip)}</title></rect>')
        y = LOW_Y + LOW_H
        for name, fill in COUNT_COLOURS:
            value = getattr(run, name)
            if value <= 0:
                continue
            seg = LOW_H * value / max_n
            y -= seg
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{seg:.1f}" fill="{fill}">'
                         f"<title>{escape(f'run {run.run_id}: {value} {name}')}</title></rect>")
        mark = "F" if run.mode == "full" else "I"
        parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{LOW_Y + LOW_H + 13}" text-anchor="middle" '
                     f'fill="#55607a">{mark}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # every interpolated text above went through escape()
