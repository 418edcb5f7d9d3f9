"""The operator status page (server-rendered). This first version shows what is safe
without a login (health, schema state, jobs); the operator login and the detailed
panels come with the operator-surface work."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, url_for
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from bridge import __version__
from bridge.store import migrate
from bridge.store.models import JobRun, utcnow
from bridge.web import runtime

blueprint = Blueprint("status", __name__, template_folder="templates")


def _uptime(seconds: float) -> str:
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{days}d " if days else "") + f"{hours:02d}:{minutes:02d}:{secs:02d}"


@blueprint.get("/")
def index():  # type: ignore[no-untyped-def]
    return redirect(url_for("status.status"))


@blueprint.get("/status")
def status():  # type: ignore[no-untyped-def]
    rt = runtime()
    database = {"backend": rt.store.engine.dialect.name, "state": "ok", "revision": None, "head": None}
    last_runs: dict[str, JobRun] = {}
    try:
        database["revision"] = migrate.current_revision(rt.store.engine)
        database["head"] = migrate.head_revision()
        if database["revision"] != database["head"]:
            database["state"] = "migrations pending"
        with rt.store.read() as session:
            for run in session.scalars(select(JobRun).order_by(JobRun.started_at.desc()).limit(200)):
                last_runs.setdefault(run.job, run)
    except SQLAlchemyError as exc:
        database["state"] = f"unreachable ({type(exc).__name__})"
    jobs = []
    if rt.scheduler is not None:
        for job in rt.scheduler.get_jobs():
            jobs.append({"name": job.id, "next": job.next_run_time, "last": last_runs.get(job.id)})
    return render_template(
        "status.html",
        version=__version__,
        uptime=_uptime((utcnow() - rt.started_at).total_seconds()),
        replica=rt.replica,
        database=database,
        jobs=jobs,
        sources=[s.name for s in rt.config.ldap.sources],
        refresh=rt.config.status.refresh_seconds,
    )
