"""The response headers of /api/v1, and their declaration in the OpenAPI document.

The values the code sends are defined here, and so are their header objects, so the
document says what the code does (schemathesis's ``response_headers_conformance``
checks each answer against them: presence when ``required``, value against ``schema``).

Two ways in, each the one that fits:

* A header that belongs to one answer body (``Location`` on a 202 ``SyncAccepted``,
  ``Cache-Control: no-store`` on a ``TokenCreated``) is declared on that response
  model, through flask-openapi3's own ``model_config["openapi_extra"]["headers"]``
  (see :func:`model_headers`): every route answering that model carries the declaration.
* A header that does not belong to a body is added by :func:`declare`, a walk over the
  generated document driven by the single table :data:`BY_STATUS` plus
  :data:`ON_EVERY_RESPONSE`. flask-openapi3 (4.3) has no hook for these: its response
  headers come only from a model's ``openapi_extra`` (and ``ErrorBody`` answers 400 to 422
  alike, while ``WWW-Authenticate`` belongs to 401 only), or from a hand-written response
  object (whose body schema it then no longer registers). ``X-Request-Id`` comes from the
  app's ``after_request`` on every answer; the 422 answers flask-openapi3 adds to every
  operation only exist in the finished document. So the walk runs on the finished document.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict

#: the challenge of an /api/v1 request without a valid admin token (bridge.web.api.common.make_blueprint)
BEARER_CHALLENGE = 'Bearer realm="dirbridge-api"'
#: the challenge of a refused login or password change (bridge.web.api.auth._refused)
BASIC_CHALLENGE = 'Basic realm="dirbridge-login"'
#: answers that hold a secret (a token, a temporary password, TOTP secrets and codes)
NO_STORE = "no-store"
#: the request id: the client's X-Request-Id when it matches, else a fresh uuid4 hex (bridge.web.create_app)
REQUEST_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"

COMPONENTS: dict[str, dict[str, Any]] = {
    "X-Request-Id": {
        "description": "the request's id, as in the logs and the audit trail: the client's X-Request-Id "
                       "when it is 1 to 64 of A-Z a-z 0-9 . _ -, else a new one",
        "required": True,
        "schema": {"type": "string", "pattern": REQUEST_ID_PATTERN},
    },
    "WWW-Authenticate": {
        "description": "the credentials wanted: an admin API token (Bearer), or for a refused login the "
                       "user's credentials (Basic)",
        "required": True,
        "schema": {"type": "string", "enum": [BEARER_CHALLENGE, BASIC_CHALLENGE]},
    },
    "Allow": {
        "description": "the methods the path accepts",
        "required": True,
        "schema": {"type": "string"},
    },
}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/headers/{name}"}


#: status code -> headers every answer with that status carries, whatever the operation (no operation
#: declares 405 today: a wrong method is a route that does not exist; bridge.web.api.errors sets Allow)
BY_STATUS: dict[int, tuple[str, ...]] = {401: ("WWW-Authenticate",), 405: ("Allow",)}
#: headers on every answer of every operation
ON_EVERY_RESPONSE: tuple[str, ...] = ("X-Request-Id",)


def no_store() -> dict[str, Any]:
    return {"Cache-Control": {"description": "the answer holds a secret shown once: not to be cached",
                              "required": True, "schema": {"type": "string", "const": NO_STORE}}}


def location(prefix: str, what: str) -> dict[str, Any]:
    """``Location: {prefix}{id}`` of a run still going on; absent when the run was not recorded yet."""
    pattern = "^" + prefix.replace(".", r"\.") + "[1-9][0-9]*$"
    return {"Location": {"description": f"where to follow {what} (absent while it is not recorded yet)",
                         "required": False, "schema": {"type": "string", "pattern": pattern}}}


def model_headers(*groups: dict[str, Any]) -> ConfigDict:
    """A response model's ``model_config``: flask-openapi3 copies ``openapi_extra["headers"]`` into
    every response that answers with the model (subclasses inherit it)."""
    headers: dict[str, Any] = {}
    for group in groups:
        headers.update(group)
    return ConfigDict(openapi_extra={"headers": headers})  # type: ignore[typeddict-unknown-key]


def declare(doc: dict[str, Any]) -> dict[str, Any]:
    """Add the headers of :data:`BY_STATUS` and :data:`ON_EVERY_RESPONSE` to every response of
    the generated document (in place, idempotent) and return it."""
    components = doc.setdefault("components", {}).setdefault("headers", {})
    components.update(COMPONENTS)
    for path_item in doc.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict):
                continue
            for status, response in operation.get("responses", {}).items():
                headers = response.setdefault("headers", {})
                names = ON_EVERY_RESPONSE + (BY_STATUS.get(int(status), ()) if str(status).isdigit() else ())
                for name in names:
                    headers.setdefault(name, ref(name))
    return doc
