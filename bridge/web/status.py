"""The operator status page (server-rendered, Flask + Jinja, no front-end build).

Behind the operator login (bridge.web.operator): a visitor without a session gets
a redirect to the login form and nothing else. The page shows version, uptime,
the database, the LDAP sources (last runs, next runs, a tripped deletion guard
with a link to its plan, a chart of the last runs), the SCIM clients, the jobs,
the leader replica, recent audit events and failures (bridge.web.status_data).
It reloads itself every ``status.refresh_seconds`` with a meta refresh (no
script), fits a phone screen, and every value is escaped by Jinja.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, abort, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from bridge.clock import utcnow
from bridge.web import operator, runtime
from bridge.web.status_data import gather, sync_run

blueprint = Blueprint("status", __name__, template_folder="templates", static_folder="static",
                      static_url_path="/status/static")


blueprint.register_blueprint(operator.blueprint)  # the login: endpoints status.operator.*
LOGIN_ENDPOINT = "status.operator.login_form"


@blueprint.after_request
def _headers(response):  # type: ignore[no-untyped-def]
    return operator.security_headers(response)


def when(value: datetime | None) -> str:
    """A UTC timestamp to the second, as the page shows it."""
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else "never"


def ago(value: datetime | None, now: datetime | None = None) -> str:
    """"5 min ago" / "in 3 min": what a person reads faster than a timestamp."""
    if value is None:
        return ""
    seconds = ((now or utcnow()) - value).total_seconds()
    future, seconds = seconds < 0, abs(seconds)
    if seconds < 60:
        text = f"{int(seconds)} s"
    elif seconds < 3600:
        text = f"{int(seconds // 60)} min"
    elif seconds < 172800:
        text = f"{seconds / 3600:.1f} h"
    else:
        text = f"{int(seconds // 86400)} d"
    return f"in {text}" if future else f"{text} ago"


def took(seconds: float | None) -> str:
    if seconds is None:
        return "running"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {int(seconds % 60)} s"


HELPERS = {"when": when, "ago": ago, "took": took}


def _login_required() -> BaseResponse | None:
    if not runtime().config.status.enabled:
        abort(404)
    if operator.current_operator() is None:
        return redirect(url_for(LOGIN_ENDPOINT), code=303)
    return None


@blueprint.get("/")
def index():  # type: ignore[no-untyped-def]
    return redirect(url_for("status.status"))


@blueprint.get("/status")
def status():  # type: ignore[no-untyped-def]
    refused = _login_required()
    if refused is not None:
        return refused
    rt = runtime()
    return render_template("status.html", view=gather(rt), refresh=rt.config.status.refresh_seconds,
                           **operator.template_values(), **HELPERS)


@blueprint.get("/status/sync-runs/<int:run_id>")
def run_plan(run_id: int):  # type: ignore[no-untyped-def]
    """One sync run: for a guarded run, what it would have removed (its plan)."""
    refused = _login_required()
    if refused is not None:
        return refused
    found = sync_run(runtime(), run_id)
    if found is None:
        abort(404)
    run, detail, source = found
    users = _page(detail.get("would_deactivate") or [], "page")
    groups = _page(detail.get("would_delete_groups") or [], "gpage")
    def pages_query(parameter: str, page: int) -> str:
        """The query of a pager link: this list's new page, the other list's page kept."""
        return urlencode({**{p.parameter: p.page for p in (users, groups) if p.page > 1}, parameter: page})

    return render_template("status_run.html", run=run, detail=detail, source=source, users=users, groups=groups,
                           pages_query=pages_query, **operator.template_values(), **HELPERS)


#: rows of a guarded run's plan on one page (a plan can hold tens of thousands)
PLAN_PAGE = 200


@dataclass(frozen=True)
class PlanPage:
    rows: list[Any]
    total: int
    first: int  # 1-based number of the first row shown
    page: int
    pages: int
    parameter: str  # the query parameter that pages this list


def _page(rows: list[Any], parameter: str) -> PlanPage:
    pages = max(1, -(-len(rows) // PLAN_PAGE))
    page = min(max(request.args.get(parameter, default=1, type=int) or 1, 1), pages)
    start = (page - 1) * PLAN_PAGE
    return PlanPage(rows[start:start + PLAN_PAGE], len(rows), start + 1, page, pages, parameter)
