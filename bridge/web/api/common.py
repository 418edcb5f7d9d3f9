"""What every /api/v1 route shares: authentication, the actor, errors, pagination."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from flask import Response, g, jsonify, request
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field

from bridge.services import Actor, ServiceError
from bridge.services.tokens import authenticate
from bridge.store.models import TokenKind
from bridge.web import runtime

SECURITY = [{"bearer": []}]
T = TypeVar("T")


class ErrorDetail(BaseModel):
    code: str = Field(description="machine-readable: invalidValue, notFound, uniqueness, lastAdmin...")
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


ERROR_RESPONSES: dict[int, type[BaseModel]] = {400: ErrorBody, 401: ErrorBody, 404: ErrorBody, 409: ErrorBody,
                                               412: ErrorBody, 422: ErrorBody}


class PageQuery(BaseModel):
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=100, ge=1, le=1000)


class Page(BaseModel, Generic[T]):
    total: int
    offset: int
    limit: int
    items: list[T]


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
        identity = authenticate(runtime().store, presented, TokenKind.admin) if scheme.lower() == "bearer" else None
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
            response[0].headers["WWW-Authenticate"] = 'Bearer realm="dirbridge-api"'
            return response
        g.api_client = identity.name
        return None

    @bp.errorhandler(ServiceError)
    def _service_error(exc: ServiceError) -> tuple[Response, int]:
        return error_response(exc.status, exc.code, exc.message, exc.field)

    return bp


def route_doc(summary: str) -> dict[str, Any]:
    return {"summary": summary}


Handler = Callable[..., Any]
