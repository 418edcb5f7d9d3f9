"""The SCIM WSGI application: scim2-server's protocol handling over StoreStorage.

dirbridge adds what the protocol leaves to the service: bearer tokens per SCIM
client (only their hashes are stored; a missing or bad token gets 401 with a
SCIM error body), the client as the source and actor of every write, one
transaction per request (read-only for GET), and a log line per request.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import secrets
import time
from contextlib import ExitStack
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

from scim2_models import (
    Context,
    Group,
    InvalidSyntaxException,
    InvalidValueException,
    NotFoundException,
    PatchOp,
    PayloadTooLargeException,
    Resource,
    ResourceType,
    ResponseParameters,
    UnauthorizedException,
)
from scim2_server import routing
from scim2_server.applications.wsgi import WSGIApplication
from scim2_server.requests import ScimRequest
from scim2_server.responses import ScimResponse
from scim2_server.routing import Target
from scim2_server.service import ScimService
from scim2_server.utils import parametrize

from bridge import jsonio
from bridge.accounts.context import context_for
from bridge.accounts.credentials import hashed_ahead
from bridge.gate import slot_released
from bridge.runtime import Runtime
from bridge.scim import lenient, limits, quirks
from bridge.scim.fast import FastPath
from bridge.scim.schema import ScimUser, build_provider
from bridge.scim.secret import cursor_secret
from bridge.scim.storage import StoreStorage
from bridge.scim.writeback import Writeback
from bridge.services import Actor
from bridge.services.tokens import TokenIdentity
from bridge.store.busy import RETRY_AFTER_SECONDS, is_busy
from bridge.store.models import TokenKind
from bridge.web.scim_activity import activity_for

log = logging.getLogger("bridge.scim")
READ_METHODS = frozenset({"GET", "HEAD"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
URL_SAFE = ":/?#[]@!$&'()*+,;=%~"  # what a URL keeps as it is; anything else is percent-encoded
# A Bulk request holds a resource, a resource a complex attribute, that one a value: far below this.
MAX_JSON_DEPTH = 32
# A log line stays a line: the reason and the path are cut to these lengths.
REASON_CHARS, PATH_CHARS = 500, 200
# ...and a client's text in them cannot start a line of its own (the text log format).
CONTROL_CHARACTERS = {code: "?" for code in (*range(32), 127)}
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
NUL_IN_JSON = re.compile(rb"\x00|(?<!\\)(?:\\\\)*\\u0000", re.IGNORECASE)  # raw, or an unescaped \u0000


# scim2-server's routing (a pure function of the method and path, as ScimService.match calls
# it), remembered for the paths clients repeat (/Users for every lookup): each one tries every
# route in turn. Paths longer than ROUTED_PATH_CHARS are routed each time, not kept.
_route = functools.lru_cache(maxsize=1024)(routing.match)
ROUTED_PATH_CHARS = 256
BASE_URL_KEPT_CHARS = 512  # the roots kept are at most this long (the Host is the client's)


@functools.lru_cache(maxsize=256)
def _base_url(scheme: str, host: str | None, server_name: str | None, server_port: str | None,
              script_name: str | None) -> str:
    """scim2-server's ``get_base_url`` for the parts of the environment it reads, remembered
    (a client names the Host: at most 256 of them are kept, each of BASE_URL_KEPT_CHARS at most)."""
    environ = {"wsgi.url_scheme": scheme, "HTTP_HOST": host, "SERVER_NAME": server_name,
               "SERVER_PORT": server_port, "SCRIPT_NAME": script_name}
    return WSGIApplication.get_base_url({key: value for key, value in environ.items() if value is not None})


class BoundedService(ScimService):
    """scim2-server's protocol steps, with what dirbridge decides differently:

    - Bulk bodies are bounded by maxPayloadSize; other bodies by scim.max_request_bytes;
    - a PATCH answers 200 with the resource (RFC 7644 §3.5.2 allows it; Okta and Entra
      show it in their documented exchanges), honouring attributes/excludedAttributes;
    - unless ``strict``, a PATCH with no operations changes nothing and answers 200
      (Microsoft's SCIM validator sends one) instead of 400.
    """

    def __init__(self, provider: Any, max_request_bytes: int, *, strict: bool = False,
                 secret: bytes | None = None):
        super().__init__(provider, secret=secret)  # the secret seals the paging cursors (RFC 9865)
        self.max_request_bytes = max_request_bytes
        self.strict = strict

    def match(self, request: ScimRequest) -> Target:  # type: ignore[override]  # a method, not static
        """scim2-server's routing of the request, worked out once: its steps (authentication,
        the body's limit, the hot path, the handler) each ask for it. Kept with the method and
        path it was worked out for, so a request whose path changes is routed anew."""
        key = (request.method, request.path)
        known: tuple[tuple[str, str], Target] | None = getattr(request, "_target", None)
        if known is not None and known[0] == key:
            return known[1]
        target = _route(request.method.upper(), request.path) if len(request.path) <= ROUTED_PATH_CHARS \
            else super().match(request)
        request._target = (key, target)  # type: ignore[attr-defined]
        return target

    def max_body_size(self, request: ScimRequest) -> int | None:
        limit = super().max_body_size(request)
        return self.max_request_bytes if limit is None else limit

    def read_patch(self, resource_type: ResourceType, body: bytes, content_type: str | None) -> PatchOp[Any]:
        if not self.strict and _no_operations(body):
            self.ensure_patch_supported()
            self.ensure_json(content_type)
            return parametrize(PatchOp, self.get_model(resource_type)).model_construct(operations=[])
        return super().read_patch(resource_type, body, content_type)

    def patch_response(self, base_url: str, resource: Resource[Any],
                       response_parameters: ResponseParameters[Any]) -> ScimResponse:
        return self.resource_response(self.publish(base_url, resource), Context.RESOURCE_REPLACEMENT_RESPONSE,
                                      response_parameters)


def _no_operations(body: bytes) -> bool:
    """Whether the PatchOp's Operations are an empty list: the last member of that name, as
    the validator reads a body that spells it twice."""
    document = lenient.decode(body)
    if not isinstance(document, dict):
        return False
    operations = [value for key, value in document.items() if key.lower() == "operations"]
    return bool(operations) and operations[-1] == []


SCIM_MOUNT = "/scim"  # where bridge.web mounts this application


def _passwords(method: str, path: str, document: Any, max_operations: int) -> list[str]:
    """The passwords a write request sets, where a User's password may stand: the body of
    a POST or PUT to /Users, a PATCH's ``password`` operation (or path-less value), and the
    same in each operation of a Bulk (at most ``max_operations``), to hash before the
    transaction (bridge.accounts.credentials.hashed_ahead). Anything else is no password."""
    found: list[str] = []

    def key(mapping: dict[Any, Any], name: str) -> Any:
        return next((v for k, v in mapping.items() if isinstance(k, str) and k.lower() == name), None)

    def of(method: str, path: str, body: Any) -> None:
        parts = [p for p in path.strip("/").split("/") if p]
        if not isinstance(body, dict) or not parts or parts[0].lower() != "users":
            return
        if (method == "POST" and len(parts) == 1) or (method == "PUT" and len(parts) == 2):
            found.append(key(body, "password"))
        elif method == "PATCH" and len(parts) == 2:
            for operation in key(body, "operations") or []:
                if not isinstance(operation, dict):
                    continue
                target, value = key(operation, "path"), key(operation, "value")
                if isinstance(target, str) and target.lower() == "password":
                    found.append(value)
                elif target is None and isinstance(value, dict):
                    found.append(key(value, "password"))

    method = method.upper()
    if method == "POST" and path.strip("/").lower() == "bulk" and isinstance(document, dict):
        operations = key(document, "operations")
        if isinstance(operations, list) and len(operations) <= max_operations:
            for operation in operations:
                if isinstance(operation, dict):
                    of(str(key(operation, "method") or "").upper(), str(key(operation, "path") or ""),
                       key(operation, "data"))
    else:
        of(method, path, document)
    return [p for p in found if isinstance(p, str) and 0 < len(p) <= 4096]


class ScimApplication(WSGIApplication):
    def __init__(self, rt: Runtime):
        provider = build_provider(rt.config.scim)
        service = BoundedService(provider, rt.config.scim.max_request_bytes, strict=rt.config.scim.strict,
                                 secret=cursor_secret(rt.config))
        writeback = Writeback(rt) if Writeback.wanted(rt) else None
        super().__init__(StoreStorage(rt.services, writeback=writeback, accounts=lambda: context_for(rt),
                                      ignored=self._password_ignored), provider, service)
        self.rt = rt
        self.storage: StoreStorage
        self.activity = activity_for(rt)  # per-client request/error counts for the status page
        self.shapes = None if rt.config.scim.strict else lenient.shapes_of({"User": ScimUser, "Group": Group})
        # The hot path for the commonest User requests (bridge.scim.fast); the rest is scim2-server's.
        self.fast = FastPath(service, self.storage, provider) if rt.config.scim.fast_path else None

    def __call__(self, environ: Any, start_response: Any) -> list[bytes]:
        """scim2-server's ``send_response``, with the body encoded by bridge.jsonio (orjson)."""
        response = self.serve(self.read_request(environ))
        body = b"" if response.body is None else jsonio.dumps(response.body)
        start_response(f"{response.status.value} {response.status.phrase}", list(response.headers.items()))
        return [body]

    def get_base_url(self, environ: Any) -> str:  # type: ignore[override]
        """The SCIM root as clients reach it: from ``server.public_url`` when it is set,
        never from the request's Host header (which a client chooses, and which would then
        land in ``Location`` and ``meta.location`` of what others read)."""
        public_url = self.rt.config.server.public_url
        if public_url:
            return f"{public_url.rstrip('/')}{SCIM_MOUNT}/v2"
        parts = (environ["wsgi.url_scheme"], environ.get("HTTP_HOST"), environ.get("SERVER_NAME"),
                 environ.get("SERVER_PORT"), environ.get("SCRIPT_NAME"))
        if sum(len(part) for part in parts if part) > BASE_URL_KEPT_CHARS:  # a client's long Host is not kept
            return super().get_base_url(environ)
        return _base_url(*parts)

    def check_auth(self, request: ScimRequest) -> None:
        headers: Any = request.headers
        scheme, _, presented = str(headers.get("AUTHORIZATION", "")).partition(" ")
        identity = (self.rt.tokens.authenticate(presented, TokenKind.scim)
                    if scheme.lower() == "bearer" else None)
        if identity is None:
            raise UnauthorizedException(detail="a SCIM client token is required (Authorization: Bearer)")
        request.scim_client = identity  # type: ignore[attr-defined]

    def get_subject(self, request: ScimRequest) -> Any:
        return getattr(request, "scim_client", None)

    def dispatch_request(self, request: ScimRequest) -> ScimResponse:
        if self.needs_auth(request):
            self.check_auth(request)
        request.subject = self.get_subject(request)
        identity: TokenIdentity | None = request.subject
        if "\x00" in request.path:  # names no resource, and PostgreSQL refuses it in any text (a 500 there)
            raise NotFoundException(detail="no resource has a NUL character in its id")
        limit = self.service.max_body_size(request)
        if limit is not None and request.body and len(request.body) > limit:
            raise PayloadTooLargeException(detail=f"the request body is larger than {limit} bytes")
        document = lenient.decode(request.body) if request.body and request.method in BODY_METHODS else None
        if document is not None and lenient.depth(document) > MAX_JSON_DEPTH:
            # No SCIM resource nests that deep; refused alike whether or not it would be left out.
            raise InvalidSyntaxException(detail=f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels")
        if self.shapes is not None and (document is not None or any(key.lower() == "filter" for key in request.query)):
            reader = lenient.Lenient(self.shapes, self._ignored_by(identity.name if identity else ""))
            if document is not None:
                request.body = json.dumps(reader.body(request.method, request.path, document)).encode()
            request.query = reader.query(dict(request.query))
        self._check_query(request, document)
        request.body = quirks.fix_body(request.method, request.path, request.body)
        if request.body and NUL_IN_JSON.search(request.body):
            # PostgreSQL cannot store NUL; refuse it alike on every backend instead of a 500 there.
            raise InvalidValueException(detail="NUL characters (\\u0000) are not allowed in values")
        request_id: str = request.request_id  # type: ignore[attr-defined]  # given in serve
        actor = Actor.scim_client(identity.name if identity else "anonymous", request_id=request_id)
        bulk = request.method == "POST" and request.path.strip("/").lower() == "bulk"
        # Bulk is not atomic (RFC 7644 §3.7): each operation commits on its own, so the write
        # lock is held one operation at a time; failOnErrors = 1 asks for all or nothing.
        atomic = bulk and isinstance(document, dict) and any(
            key.lower() == "failonerrors" and value == 1 for key, value in document.items())
        passwords = (_passwords(request.method, request.path, document, self.rt.config.scim.bulk_max_operations)
                     if document is not None and identity and self._may_set_passwords(identity.name) else [])
        with ExitStack() as stack:
            if passwords:
                with slot_released():  # the hashes take the CPU of argon2, not of Python
                    stack.enter_context(hashed_ahead(context_for(self.rt), passwords))
            stack.enter_context(self.storage.begin(actor, write=request.method not in READ_METHODS,
                                                   per_operation=bulk and not atomic))
            response = self.fast.handle(request) if self.fast is not None else None
            return response if response is not None else self.handler.handle(request)

    def handle_exception(self, request: ScimRequest, exception: Exception) -> ScimResponse:
        """A store too busy to answer is a 503 with Retry-After (the request did nothing and
        may be sent again), never a 500."""
        if is_busy(exception):
            log.warning("SCIM %s %s: the store is busy, answered 503", request.method, request.path[:PATH_CHARS],
                        extra={"request_id": getattr(request, "request_id", None)})
            response = ScimResponse(HTTPStatus.SERVICE_UNAVAILABLE, {
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": "503",
                "detail": "the store is busy: try again in a moment"})
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return response
        return super().handle_exception(request, exception)

    def _may_set_passwords(self, client: str) -> bool:
        return bool(self.rt.config.scim.client(client).passwords)

    def _check_query(self, request: ScimRequest, document: Any) -> None:
        """The bounds of bridge.scim.limits on the query string and a POST /.search body."""
        limits.check_paging(dict(request.query))
        config = self.rt.config.scim
        filters = [value for key, value in request.query.items() if key.lower() == "filter"]
        if isinstance(document, dict) and request.path.rstrip("/").endswith(".search"):
            filters += [value for key, value in document.items() if key.lower() == "filter"]
            limits.check_paging({k: v for k, v in document.items() if isinstance(v, (int, str))})
        for text in filters:
            if isinstance(text, str):
                limits.check_filter(text, config.max_filter_length, config.max_filter_terms)

    def finalize_response(self, request: ScimRequest, response: ScimResponse) -> ScimResponse:
        """scim2-server's headers, none carrying a line break: ``Location`` repeats the decoded
        request URL, and ``/scim/v2/x%0d%0aSet-Cookie:...`` must not become a header of its own."""
        response = super().finalize_response(request, response)
        for name, value in list(response.headers.items()):
            if any(ch in value for ch in "\r\n\x00"):
                response.headers[name] = quote(value, safe=URL_SAFE)
        return response

    def _password_ignored(self, client: str) -> None:
        self.rt.metrics.scim_ignored.labels(client, "password").inc()
        log.debug("SCIM: a password left out: [scim.clients.%s] passwords is not true", client,
                  extra={"client": client})

    def _ignored_by(self, client: str) -> lenient.Ignored:
        counter = self.rt.metrics.scim_ignored

        def ignored(kind: str, name: str) -> None:
            counter.labels(client, kind).inc()
            log.debug("SCIM: %s %r left out (scim.strict = false)", kind.replace("_", " "), name[:200],
                      extra={"client": client})
        return ignored

    def serve(self, request: ScimRequest) -> ScimResponse:
        started = time.perf_counter()
        incoming = request.header("X-Request-Id") or ""
        # Only a well-formed id is kept (it lands in logs and audit events, 64 characters at most).
        # Given before anything can fail, so every answer, a 401 or 413 too, carries it.
        request_id = incoming if REQUEST_ID.match(incoming) else secrets.token_hex(16)
        request.request_id = request_id  # type: ignore[attr-defined]
        response = super().serve(request)
        response.headers["X-Request-Id"] = request_id
        elapsed = time.perf_counter() - started
        client = getattr(request, "scim_client", None)
        self.rt.metrics.scim_requests.labels(client.name if client else "", request.method,
                                             str(response.status.value)).inc()
        self.rt.metrics.scim_seconds.labels(request.method).observe(elapsed)
        self.activity.record(client.name if client else None, response.status.value)
        if not log.isEnabledFor(logging.INFO):
            return response
        status = response.status.value
        extra: dict[str, Any] = {
            "request_id": getattr(request, "request_id", None), "status": status,
            "client": client.name if client else None,
            "duration_ms": round(elapsed * 1000, 2),
        }
        path = request.path[:PATH_CHARS].translate(CONTROL_CHARACTERS)
        if 400 <= status < 500 and isinstance(response.body, dict):
            # Why an IdP's request failed, on the line an operator finds by the request id.
            reason = str(response.body.get("detail") or "")[:REASON_CHARS].translate(CONTROL_CHARACTERS)
            scim_type = response.body.get("scimType")
            extra.update(reason=reason, scim_type=scim_type)
            log.info("SCIM %s %s %s %s: %s", request.method, path, status, scim_type or "-", reason, extra=extra)
        else:
            log.info("SCIM %s %s %s", request.method, path, status, extra=extra)
        return response
