"""What every /api/v1 route shares: authentication, the actor, errors, pagination."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from http import HTTPStatus
from typing import Any, Generic, TypeVar

from flask import Response, g, jsonify, request
from flask_openapi3.blueprint import APIBlueprint
from flask_openapi3.models.tag import Tag
from pydantic import BaseModel, Field
from sqlalchemy import Select, func, select

from bridge.services import Actor, ServiceError
from bridge.services.validate import unstorable
from bridge.store.models import TokenKind
from bridge.web import runtime
from bridge.web.api.headers import BEARER_CHALLENGE
from bridge.web.paths import nul_in_path

SECURITY: list[dict[str, list[str]]] = [{"bearer": []}]
T = TypeVar("T")


class ErrorDetail(BaseModel):
    code: str = Field(description="machine-readable: invalidValue, notFound, uniqueness, lastAdmin...")
    message: str
    field: str | None = None
    reason: str | None = Field(default=None, description="directoryPasswordPolicy: the directory's reason "
                               "(too_short, in_history, insufficient_quality, wrong_password, ...)")


class ErrorBody(BaseModel):
    error: ErrorDetail


#: what any /api/v1 operation may answer besides its own: bad input (400: also unparsable JSON; 422: the
#: body or query does not fit the schema), no admin token (401), an operator session without its CSRF
#: header (403), unknown ids (404), conflicts (409), stale
#: versions (412), bodies over the size limit (413) and bodies that are not JSON (415). Their headers
#: (WWW-Authenticate on 401, X-Request-Id on all) are declared by bridge.web.api.headers.declare.
ERROR_RESPONSES: dict[str | int | HTTPStatus, type[BaseModel] | dict[Any, Any] | None] = {
    status: ErrorBody for status in (400, 401, 403, 404, 409, 412, 413, 415, 422)}
MAX_OFFSET = 2**31 - 1  # beyond any table; also keeps SQLite's 64-bit OFFSET from overflowing


class PageQuery(BaseModel):
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET, description="how many items to skip")
    limit: int = Field(default=100, ge=1, le=1000, description="at most this many items")


class Page(BaseModel, Generic[T]):
    """Every list of the API: ``total`` counts all matches, ``items`` holds at most ``limit`` from ``offset``."""

    total: int
    offset: int
    limit: int
    items: list[T]


def page_json(query: PageQuery, total: int, items: Sequence[Any]) -> Response:
    """The Page body for items already cut to the page."""
    return jsonify(total=total, offset=query.offset, limit=query.limit, items=list(items))


def page_of(stmt: Select[Any], order_by: Sequence[Any], query: PageQuery, to_json: Callable[[Any], Any]) -> Response:
    """The Page body of a query's rows: the total of all matches, then one page in ``order_by``."""
    with runtime().store.read() as session:
        total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        rows = session.scalars(stmt.order_by(*order_by).offset(query.offset).limit(query.limit))
        return page_json(query, total, [to_json(row) for row in rows])


def paged(query: PageQuery, items: Sequence[Any]) -> Response:
    """The Page body for a complete list, cut here (lists that are small or built in memory)."""
    return page_json(query, len(items), items[query.offset:query.offset + query.limit])


def _drop_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def unchanged(description: str | None = None, **constraints: Any) -> Any:
    """A PATCH field that may be left out (None: unchanged) but not sent as null: the
    schema says the plain type, so a null is refused (422) instead of reaching the store."""
    return Field(default=None, description=description, json_schema_extra=_drop_default, **constraints)


def error_response(status: int, code: str, message: str, field: str | None = None) -> tuple[Response, int]:
    return jsonify(error={"code": code, "message": message, "field": field}), status


def validation_error(exc: Any) -> Response:
    """flask-openapi3's hook: pydantic errors as our error body, naming the field."""
    first = exc.errors(include_url=False)[0]
    field = ".".join(str(p) for p in first["loc"]) or None
    message = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
    response, status = error_response(422, "invalidValue", f"{field}: {message}" if field else message, field)
    response.status_code = status
    return response


def api_actor() -> Actor:
    return Actor(name=f"api:{g.api_client}", channel="admin-api", request_id=g.get("request_id"))


def make_blueprint(name: str, import_name: str, tag: str, description: str) -> APIBlueprint:
    """A blueprint under /api/v1 that only admin API clients may call."""
    bp = APIBlueprint(name, import_name, url_prefix="/api/v1", abp_tags=[Tag(name=tag, description=description)],
                      abp_security=SECURITY, abp_responses=ERROR_RESPONSES)

    @bp.before_request
    def _authenticate() -> tuple[Response, int] | None:
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        identity = (runtime().tokens.authenticate(presented, TokenKind.admin)
                    if scheme.lower() == "bearer" else None)
        if identity is None and not header:  # no token: an operator's status-page session, CSRF header for writes
            from bridge.web.operator import api_session

            operator, refusal = api_session()
            if refusal is not None:
                return refusal
            if operator is not None:
                g.api_client = f"operator:{operator}"
                return None
        if identity is None:
            response = error_response(401, "unauthorized", "an admin API token is required (Authorization: Bearer)")
            response[0].headers["WWW-Authenticate"] = BEARER_CHALLENGE  # declared on every 401 (api.headers)
            return response
        g.api_client = identity.name
        return None

    @bp.before_request
    def _json_body() -> tuple[Response, int] | None:
        """After authentication: a body that is not JSON gets a clear 415/400, not a schema error."""
        return json_body_problem()

    @bp.errorhandler(ServiceError)
    def _service_error(exc: ServiceError) -> tuple[Response, int]:
        response = error_response(exc.status, exc.code, exc.message, exc.field)
        reason = getattr(exc, "reason", None)
        if reason is not None:  # the directory's own word for a refused password
            body = response[0].get_json()
            body["error"]["reason"] = reason
            response = jsonify(body), response[1]
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            response[0].headers["Retry-After"] = str(retry_after)
        return response

    return bp


def json_body_problem() -> tuple[Response, int] | None:
    """415 for a body that says it is not JSON, 400 for JSON that does not parse (413 comes from
    Werkzeug's size limit while reading), 422 for a NUL character or a lone surrogate anywhere
    in the query or the body (no database stores either in text: PostgreSQL refuses NUL, the
    drivers cannot encode a surrogate), 404 for a NUL in the path (it names no resource, as
    SCIM answers too)."""
    in_path = nul_in_path(request.view_args)
    if in_path is not None:
        return error_response(404, "notFound", f"{in_path}: no such resource (it contains a NUL character)", in_path)
    for name, value in request.args.items(multi=True):
        found = unstorable({name: value}, surrogates=True)
        if found is not None:
            return error_response(422, "invalidValue", f"{name}: contains {found[1]}", name)
    data = request.get_data(cache=True)
    if not data:
        return None
    mimetype = request.mimetype or ""
    if mimetype and mimetype != "application/json" and not mimetype.endswith("+json"):
        return error_response(415, "unsupportedMediaType", f"send the body as application/json, not {mimetype}")
    try:
        parsed = json.loads(data)
    except ValueError as exc:
        return error_response(400, "invalidJson", f"the body is not valid JSON: {exc}")
    except RecursionError:  # thousands of nested brackets: refused here, before any parser recurses again
        return error_response(400, "invalidJson", "the body is nested too deeply")
    found = unstorable(parsed, surrogates=True)  # no store keeps either in text (PostgreSQL, the drivers)
    if found is not None:
        where, what = found
        return error_response(422, "invalidValue", f"{where or 'the body'}: contains {what}", where or None)
    return None


def route_doc(summary: str) -> dict[str, Any]:
    return {"summary": summary}


Handler = Callable[..., Any]
