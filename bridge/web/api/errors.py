"""App-level error handlers for /api/v1: whatever goes wrong outside a route (no such
route, wrong method, body too large, an unexpected exception) answers with the same
JSON error body as the routes, so a client never has to parse Flask's HTML pages.

Other paths (status page, invitation pages, SCIM) keep their own error pages.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, g, request
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from bridge.store.busy import RETRY_AFTER_SECONDS, is_busy
from bridge.web.api.common import error_response

log = logging.getLogger(__name__)
PREFIX = "/api/v1/"

#: machine-readable codes of the HTTP errors Werkzeug raises before a route runs
CODES = {400: "invalidRequest", 404: "notFound", 405: "methodNotAllowed", 413: "payloadTooLarge",
         415: "unsupportedMediaType", 500: "internalError"}


def _is_api() -> bool:
    return request.path.startswith(PREFIX) or request.path == PREFIX.rstrip("/")


def _http_error(exc: HTTPException) -> HTTPException | tuple[Response, int]:
    if not _is_api():
        return exc
    status = exc.code or 500
    message = {404: f"no route {request.path}", 405: f"{request.method} is not allowed on {request.path}",
               413: "the request body is larger than the server accepts",
               # Flask has logged the exception; the client gets the request id, never its text.
               500: f"internal error (request id {g.get('request_id', '-')})",
               }.get(status, exc.description or exc.name)
    response, status = error_response(status, CODES.get(status, "httpError"), message)
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        response.headers["Allow"] = ", ".join(sorted(exc.valid_methods))
    return response, status


def _database_error(exc: DBAPIError) -> tuple[Response, int]:
    """A store too busy to answer (bridge.store.busy) is a 503 the client may retry, on any
    path; any other database error stays a 500 (a bug, logged with its traceback)."""
    if not is_busy(exc):
        raise exc
    log.warning("the store is busy: %s %s answered 503", request.method, request.path,
                extra={"request_id": g.get("request_id")})
    if _is_api():
        response, status = error_response(503, "busy", "the store is busy: try again in a moment")
    else:
        response, status = Response("The service is busy: try again in a moment.\n", mimetype="text/plain"), 503
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response, status


def init_app(app: Flask) -> None:
    """Register the handlers; called once by the app factory."""
    app.register_error_handler(DBAPIError, _database_error)
    # An unexpected exception reaches this handler as InternalServerError (500), unless the app
    # propagates exceptions (testing), in which case the test sees the exception itself.
    app.register_error_handler(HTTPException, _http_error)
