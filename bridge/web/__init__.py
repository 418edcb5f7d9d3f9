"""The Flask app factory: one app per Runtime, no global state at import time."""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import current_app, g, jsonify, request
from flask_openapi3.models.info import Info
from flask_openapi3.openapi import OpenAPI
from werkzeug.middleware.proxy_fix import ProxyFix

from bridge import __version__
from bridge.runtime import Runtime

log = logging.getLogger("bridge.http")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def runtime() -> Runtime:
    """The Runtime of the app serving the current request."""
    found: Runtime = current_app.extensions["dirbridge"]
    return found


def create_app(rt: Runtime) -> OpenAPI:
    from bridge.web.api.common import validation_error
    from bridge.web.paths import RowIdConverter

    app = OpenAPI(
        __name__,
        info=Info(title="dirbridge admin and portal API", version=__version__),
        security_schemes={"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "dbr token"}},
        doc_ui=False,
        validation_error_status=422,
        validation_error_callback=validation_error,
    )
    app.url_map.converters["int"] = RowIdConverter  # before any route is added: every <int:...> is bounded
    app.config.update(JSON_SORT_KEYS=False, MAX_CONTENT_LENGTH=rt.config.scim.bulk_max_payload_bytes * 2)
    app.extensions["dirbridge"] = rt
    if rt.config.server.trusted_proxies:
        hops = rt.config.server.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]

    @app.before_request
    def _start() -> None:
        incoming = request.headers.get("X-Request-Id", "")
        g.request_id = incoming if REQUEST_ID.match(incoming) else uuid.uuid4().hex
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response):  # type: ignore[no-untyped-def]
        response.headers["X-Request-Id"] = g.get("request_id", "")
        elapsed_ms = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        if request.path not in ("/healthz", "/readyz"):
            log.info("%s %s %s", request.method, request.path, response.status_code, extra={
                "request_id": g.get("request_id"), "status": response.status_code,
                "duration_ms": round(elapsed_ms, 2), "client": request.remote_addr,
            })
        return response

    from bridge.web import health, status
    from bridge.web.api import (
        accounts,
        audit,
        auth,
        check,
        customers,
        grants,
        invitations,
        jobs,
        rights_groups,
        roles,
        scopes,
        selfservice,
        sync,
        tokens,
        users,
    )
    from bridge.web.api import errors as api_errors
    from bridge.web.api import headers as api_headers

    app.register_blueprint(health.blueprint)
    app.register_blueprint(status.blueprint)
    from bridge.web import invite

    invite.init_app(app, rt)  # the invitation pages and their session (bridge.web.invite)
    from bridge.web import account

    app.register_blueprint(account.blueprint)  # the users' own pages, in the same session
    for api in (users.bp, check.bp, roles.bp, scopes.bp, grants.bp, customers.bp,
                auth.bp, invitations.bp, accounts.bp, selfservice.bp, tokens.bp, sync.bp, jobs.bp, rights_groups.bp,
                audit.bp):
        app.register_api(api)
    api_errors.init_app(app)  # JSON error bodies for everything under /api/v1 (bridge.web.api.errors)

    if rt.config.scim.enabled:
        from werkzeug.middleware.dispatcher import DispatcherMiddleware

        from bridge.scim.app import SCIM_MOUNT, ScimApplication

        # SCIM is served by scim2-server's own WSGI application under /scim (/scim/v2/...).
        app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {SCIM_MOUNT: ScimApplication(rt)})  # type: ignore[method-assign]

    from bridge.web.headers import SecurityHeaders

    # outermost: every answer, SCIM's included, gets nosniff (and HSTS behind an https public URL)
    app.wsgi_app = SecurityHeaders(app.wsgi_app, rt.config.server.public_url)  # type: ignore[method-assign]

    @app.get("/api/v1/openapi.json", doc_ui=False)
    def openapi_document():  # type: ignore[no-untyped-def]
        """The API's OpenAPI 3.1 document, generated from the routes above, with the response
        headers that do not belong to one body (bridge.web.api.headers.declare)."""
        return jsonify(api_headers.declare(app.api_doc))

    return app
