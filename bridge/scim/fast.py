"""The SCIM hot path: the hottest User requests answered from store rows, without
scim2-server's round trips through a model per resource.

scim2-server serves a request in steps: it validates the request with scim2-models,
asks the storage for resources (StoreStorage builds each from a row's document with
``model_validate``), then publishes each one (a deep copy, its references made URLs)
and dumps it again with ``model_dump``. For a page of 100 users those per-resource
steps cost about four times what the store does. Here the same requests take the
same steps in the same order, with the same scim2-server service methods wherever a
request is read or checked (scim2-models stays the validator of record: search
parameters, attributes, PatchOp, POST and PUT bodies, preconditions), and only what
is per resource is done differently: the documents the store renders
(bridge.scim.convert) are published and projected as plain dicts.

Served here (``FastPath.handle``), each on ``/Users`` of the User resource type:

- ``GET /Users`` (filter, sortBy/sortOrder, startIndex/count, cursors);
- ``GET /Users/{id}`` (with If-None-Match/If-Match);
- ``POST /Users``; ``PATCH /Users/{id}`` and ``PUT /Users/{id}`` (the PATCH and PUT still
  read the current user as a model: scim2-models applies the operations and the
  replacement rules to it).

Everything else returns None and goes to scim2-server's handler: Groups, searches at the
root and with ``POST .search``, Bulk, /Me, DELETE, discovery, and an ``attributes`` or
``excludedAttributes`` that is more than top-level names of the core schema or whole
extension URNs (``name.givenName``, ``emails.value``, an extension's attribute), or both
of them at once. tests/integration/test_scim_fast_path.py compares every answer given
here with scim2-server's own on the same data.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from http import HTTPStatus
from types import SimpleNamespace
from typing import Any, cast

from pydantic_core import to_jsonable_python
from scim2_models import Pagination, Resource, ResourceType, ScimProvider
from scim2_server.conditions import Conditions
from scim2_server.requests import ScimRequest
from scim2_server.responses import ScimResponse
from scim2_server.routing import Operation
from scim2_server.service import SEARCH_REQUEST_PARAMETERS, ScimService

from bridge.scim.schema import ENTERPRISE_SCHEMA, ScimUser
from bridge.scim.storage import StoreStorage

LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
# What scim2-models returns whatever "attributes" and "excludedAttributes" say (returned: always).
ALWAYS = frozenset({"id", "schemas"})
PROJECTION = ("attributes", "excludedAttributes")
# The IdPs' probe as they spell it: ``userName eq "..."`` (or externalId), single spaces, the
# attribute and the operator in any case of ASCII letters, a quoted value without an escape or
# a control character. Any other spelling (more spaces, escapes, a URN prefix) is parsed by
# scim2-models as every other filter.
LOOKUP = re.compile(r'([A-Za-z]+) ([A-Za-z]+) "([^"\\\x00-\x1f\x7f]*)"')
LOOKUP_ATTRIBUTES = {"username": "userName", "externalid": "externalId"}
# The search parameters a lookup may carry; with any other that scim2-server reads, it is a search.
LOOKUP_PARAMETERS = frozenset({"filter", "startIndex", "count", *PROJECTION})
LOOKUP_COUNT = re.compile(r"[1-9][0-9]{0,8}")


def _aliases(model: type[Resource[Any]]) -> dict[str, str]:
    """The top-level attribute names of the core schema, lower-cased, by their JSON names."""
    names = {}
    for name, info in model.model_fields.items():
        alias = str(info.serialization_alias or info.alias or name)
        if not alias.startswith("urn:"):
            names[alias.lower()] = alias
    return names


class FastPath:
    """Answers the requests listed in the module docstring, or None for scim2-server's handler."""

    def __init__(self, service: ScimService, storage: StoreStorage, provider: ScimProvider):
        self.service = service
        self.storage = storage
        self.provider = provider
        self.resource_type: ResourceType = service.get_resource_type("User")
        self.model = service.get_model(self.resource_type)
        self.core = _aliases(ScimUser)
        self.extensions = {urn.lower(): urn for urn in ScimUser.get_extension_models()}
        self.etags = service.etag_supported
        index = Pagination.DefaultPaginationMethod.index
        # Lookups answered without scim2-models' parser when the configuration lets scim2-server
        # answer them the same way: filters supported, pages by index by default.
        self.lookups = bool(service.config.filter and service.config.filter.supported
                            and service._pages_by(index) and service._default_pagination() == index)
        self.not_lookup = [key for key in SEARCH_REQUEST_PARAMETERS if key not in LOOKUP_PARAMETERS]

    # -- routing ---------------------------------------------------------------------

    def handle(self, request: ScimRequest) -> ScimResponse | None:
        """The response to a request this path serves, or None (scim2-server serves it)."""
        try:
            target = self.service.match(request)
        except Exception:  # no route: scim2-server's handler answers with its error
            return None
        if target.me or (target.endpoint or "").casefold() != "users":
            return None
        projection = self._projection(request.query)
        if projection is None:
            return None
        operation = target.operation
        with self.provider:
            if operation is Operation.search:
                return self._search(request, projection)
            if operation is Operation.query:
                return self._query(request, cast(str, target.resource_id), projection)
            if operation is Operation.create:
                return self._create(request)
            if operation is Operation.patch:
                return self._patch(request, cast(str, target.resource_id), projection)
            if operation is Operation.replace:
                return self._replace(request, cast(str, target.resource_id), projection)
        return None

    def _projection(self, query: Any) -> tuple[bool, frozenset[str]] | None:
        """(whether the names are the attributes to return, else those to leave out; the names
        lower-cased), when the request's attributes/excludedAttributes are top-level names this
        path projects alike; None otherwise."""
        given = [key for key in PROJECTION if key in query]
        if not given:
            return False, frozenset()
        if len(given) > 1:
            return None
        names = set()
        for part in str(query[given[0]]).split(","):
            name = part.strip().lower()
            if name not in self.core and name not in self.extensions:
                return None
            names.add(name)
        return given[0] == "attributes", frozenset(names)

    # -- reads -----------------------------------------------------------------------

    def _search(self, request: ScimRequest, projection: tuple[bool, frozenset[str]]) -> ScimResponse:
        looked_up = self._lookup(request, projection)
        if looked_up is not None:
            return looked_up
        service, types = self.service, [self.resource_type]
        search_request, position = service.read_search_query(types, request.query)
        with self.storage.operation():
            page = self.storage.search_documents(types, search_request, position=position,
                                                 skip=self._skipped(projection))
        by_cursor = search_request.cursor is not None
        base_url = request.base_url
        resources = [self._project(self._publish(base_url, doc), projection) for doc in page.documents]
        body: dict[str, Any] = {"schemas": [LIST_RESPONSE], "totalResults": page.total}
        if not by_cursor:
            if page.total is None:
                raise ValueError("The storage gave no total for a search paged by index")
            body["startIndex"] = search_request.start_index
        body["itemsPerPage"] = len(resources)
        if by_cursor and search_request.count != 0:
            for key, position in (("nextCursor", page.next), ("previousCursor", page.previous)):
                cursor = service._seal(types, search_request, position)
                if cursor is not None:
                    body[key] = cursor
        body["Resources"] = resources
        if body["totalResults"] is None:
            del body["totalResults"]
        return ScimResponse(HTTPStatus.OK, body)

    def _lookup(self, request: ScimRequest, projection: tuple[bool, frozenset[str]]) -> ScimResponse | None:
        """The answer to the IdPs' probe, ``GET /Users?filter=userName eq "x"`` (or externalId),
        spelt as LOOKUP reads it, on the first page (startIndex 1 or none, count a plain number
        or none), without sortBy or a cursor; None for any other search. The answer is what
        _search gives for the parsed filter: the same WHERE clause and page
        (StoreStorage.lookup_documents), the count bounded by scim2-server's own rule."""
        query = request.query
        if not self.lookups or any(key in query for key in self.not_lookup):
            return None
        found = LOOKUP.fullmatch(query.get("filter") or "")
        attribute = LOOKUP_ATTRIBUTES.get(found[1].lower()) if found and found[2].lower() == "eq" else None
        asked = query.get("count")
        if attribute is None or query.get("startIndex", "1") != "1" or (
                asked is not None and not LOOKUP_COUNT.fullmatch(asked)):
            return None
        bounded = SimpleNamespace(count=None if asked is None else int(asked))
        self.service._bound_count(cast(Any, bounded))
        count = cast("int | None", bounded.count)
        if count is None:
            return None
        if projection[1]:
            self.service.read_response_parameters(self.resource_type, query)  # refuses what it refuses
        assert found is not None
        with self.storage.operation():
            page = self.storage.lookup_documents(attribute, found[3], count, skip=self._skipped(projection))
        resources = [self._project(self._publish(request.base_url, doc), projection) for doc in page.documents]
        return ScimResponse(HTTPStatus.OK, {"schemas": [LIST_RESPONSE], "totalResults": page.total, "startIndex": 1,
                                            "itemsPerPage": len(resources), "Resources": resources})

    def _query(self, request: ScimRequest, resource_id: str,
               projection: tuple[bool, frozenset[str]]) -> ScimResponse:
        if projection[1]:  # without attributes and excludedAttributes there is nothing to refuse
            self.service.read_response_parameters(self.resource_type, request.query)
        with self.storage.operation():
            doc = self.storage.get_document(self.resource_type, resource_id, skip=self._skipped(projection))
        published = self._publish(request.base_url, doc)
        version = published["meta"].get("version")
        if not self.service.read_conditions(request).check(version, "GET"):
            return ScimResponse(HTTPStatus.NOT_MODIFIED, None, {"ETag": version} if version else {})
        return self._resource_response(published, projection)

    # -- writes ----------------------------------------------------------------------

    def _create(self, request: ScimRequest) -> ScimResponse:
        resource = self.service.read_creation(self.resource_type, request.body, request.header("Content-Type"))
        doc = self.storage.create_document(self.resource_type, resource)  # no savepoint: see _change
        response = self._resource_response(self._publish(request.base_url, doc), (False, frozenset()),
                                           HTTPStatus.CREATED)
        response.headers["Location"] = response.headers["Content-Location"]
        return response

    def _patch(self, request: ScimRequest, resource_id: str,
               projection: tuple[bool, frozenset[str]]) -> ScimResponse:
        service, resource_type = self.service, self.resource_type
        service.read_response_parameters(resource_type, request.query)
        patch_op = service.read_patch(resource_type, request.body, request.header("Content-Type"))
        return self._change(request, resource_id, projection,
                            lambda current, conditions: service.apply_patch(current, patch_op, conditions))

    def _replace(self, request: ScimRequest, resource_id: str,
                 projection: tuple[bool, frozenset[str]]) -> ScimResponse:
        service, resource_type = self.service, self.resource_type
        service.read_response_parameters(resource_type, request.query)

        def replace(current: Resource[Any], conditions: Conditions) -> Resource[Any] | None:
            # Read after the current user, as scim2-server's handler does.
            replacement = service.read_replacement(resource_type, request.body, request.header("Content-Type"))
            return service.apply_replacement(current, replacement, conditions)
        return self._change(request, resource_id, projection, replace)

    def _change(self, request: ScimRequest, resource_id: str, projection: tuple[bool, frozenset[str]],
                change: Callable[[Resource[Any], Conditions], Resource[Any] | None]) -> ScimResponse:
        """A PATCH or PUT: the current user as a model (scim2-models applies the change and
        checks the preconditions), stored, and answered from the stored row's document. A
        change that changes nothing keeps the user as it is (its version too).

        A write here is the request's one operation, so it takes no savepoint of its own
        (``StoreStorage.operation``, which a Bulk's operations need): an error leaves the
        request's ``StoreStorage.begin``, whose unit of work rolls all of it back."""
        current = self.storage.get(self.resource_type, resource_id)
        assert current.meta is not None
        version = current.meta.version
        changed = change(current, self.service.read_conditions(request))
        doc = (self.storage.update_document(self.resource_type, changed, expected_version=version)
               if changed is not None else self.storage.get_document(self.resource_type, resource_id))
        return self._resource_response(self._publish(request.base_url, doc), projection)

    # -- documents -------------------------------------------------------------------

    @staticmethod
    def _skipped(projection: tuple[bool, frozenset[str]]) -> frozenset[str]:
        """The whole attributes the response leaves out that the store need not load."""
        attributes, names = projection
        if attributes:
            return frozenset() if "groups" in names else frozenset({"groups"})
        return frozenset({"groups"}) & names

    def _publish(self, base_url: str, doc: dict[str, Any]) -> dict[str, Any]:
        """The document as scim2-server's ``publish`` and ``model_dump`` give it: meta with its
        location and JSON timestamps, references to resources as URLs. ``doc`` is not changed
        (its values may be the row's own JSON)."""
        published = dict(doc)
        meta = published.pop("meta")
        location = self.service.resource_location(base_url, self.resource_type, doc["id"])
        out_meta = {"resourceType": meta["resourceType"], "created": to_jsonable_python(meta["created"]),
                    "lastModified": to_jsonable_python(meta["lastModified"]), "location": location}
        if self.etags and meta.get("version"):
            out_meta["version"] = meta["version"]
        published["meta"] = out_meta
        reference = self.service.reference_location
        if "groups" in published:
            published["groups"] = [{**group, "$ref": reference(base_url, group["$ref"])} if "$ref" in group else group
                                   for group in published["groups"]]
        enterprise = published.get(ENTERPRISE_SCHEMA)
        if enterprise and isinstance(enterprise.get("manager"), dict) and enterprise["manager"].get("$ref"):
            manager = enterprise["manager"]
            published[ENTERPRISE_SCHEMA] = {**enterprise,
                                            "manager": {**manager, "$ref": reference(base_url, manager["$ref"])}}
        return published

    def _project(self, published: dict[str, Any], projection: tuple[bool, frozenset[str]]) -> dict[str, Any]:
        """The attributes the request asks for (RFC 7644 §3.4.2.5), as scim2-models' model_dump
        with response parameters: id and schemas always; ``schemas`` lists the extensions left."""
        attributes, names = projection
        if not names:
            return published
        if attributes:
            out = {key: value for key, value in published.items()
                   if key.lower() in ALWAYS or key.lower() in names}
        else:
            out = {key: value for key, value in published.items()
                   if key.lower() in ALWAYS or key.lower() not in names}
        out["schemas"] = [urn for urn in published["schemas"] if urn == USER_SCHEMA or urn in out]
        return out

    def _resource_response(self, published: dict[str, Any], projection: tuple[bool, frozenset[str]],
                           status: HTTPStatus = HTTPStatus.OK) -> ScimResponse:
        meta = published["meta"]
        headers = {"Content-Location": meta["location"]}
        if meta.get("version"):
            headers["ETag"] = meta["version"]
        return ScimResponse(status, self._project(published, projection), headers)

