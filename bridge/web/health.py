"""Liveness and readiness for load balancers, systemd and Kubernetes-style probes."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from bridge.store import migrate
from bridge.web import runtime

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    """The process is alive and serving requests."""
    return jsonify(status="ok")


@blueprint.get("/metrics")
def metrics():  # type: ignore[no-untyped-def]
    """Prometheus text format: this process's counters and the store's sync and leader figures."""
    return Response(generate_latest(runtime().metrics.registry), mimetype=CONTENT_TYPE_LATEST)


@blueprint.get("/readyz")
def readyz():  # type: ignore[no-untyped-def]
    """Ready for traffic: the database answers and its schema is the one the code needs."""
    checks: dict[str, str] = {}
    try:
        runtime().store.ping()
        checks["database"] = "ok"
        current, head = migrate.current_revision(runtime().store.engine), migrate.head_revision()
        checks["migrations"] = "ok" if current == head else f"at {current or 'nothing'}, needs {head}"
    except SQLAlchemyError as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
        checks["migrations"] = "unknown"
    ready = all(value == "ok" for value in checks.values())
    return jsonify(status="ready" if ready else "not ready", checks=checks), 200 if ready else 503
