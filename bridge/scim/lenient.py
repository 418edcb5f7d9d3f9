"""What real IdPs send beyond RFC 7643/7644, read the way they mean it (unless ``scim.strict``).

Entra ID, Okta and Microsoft's own SCIM test collections send bodies that a
literal reading of the RFCs refuses, and an IdP that gets a 400 for them stops
provisioning the user. In the default mode dirbridge reads them as follows,
before scim2-server validates anything (so Bulk operations are read alike):

- an attribute the resource does not define, a sub-attribute its complex
  attribute does not define, and a ``null`` value are left out (RFC 7643 §2.5
  makes null and unassigned the same); each one is logged at debug and counted;
- a URI in ``schemas`` that the resource type does not know is left out
  (Entra's ``.../ADSCIM/2.0/Group``, a misspelt enterprise URN);
- in a PATCH, members of the PatchOp or of an operation that RFC 7644 does not
  define are left out; a replace whose value is ``""`` or ``null`` removes the
  attribute (Entra's gallery "null update" test), an add of such a value changes
  nothing; a path naming an
  extension attribute without its URN (``manager``) gets the URN when exactly
  one extension defines that name; a group member given as a bare id becomes
  ``{"value": id}``, and a member's ``displayName`` its ``display``;
- a filter comparison value that is not quoted (``userName eq jdoe``) is a
  string, unless it is ``true``, ``false``, ``null`` or a number.

``scim.strict = true`` turns all of this off. The older, always-on fixes for
Entra's own forms live in bridge.scim.quirks, which runs after this module.
"""

from __future__ import annotations

import json
import logging
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from scim2_models import Resource

log = logging.getLogger("bridge.scim.lenient")

PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
PATCH_MEMBERS = frozenset({"schemas", "operations"})
OPERATION_MEMBERS = frozenset({"op", "path", "value"})
RESOURCE_ENDPOINTS = {"users": "User", "groups": "Group"}
COMPARISONS = frozenset({"eq", "ne", "co", "sw", "ew", "gt", "lt", "ge", "le"})
BARE_LITERALS = frozenset({"true", "false", "null"})
NUMBER = re.compile(r"^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$")

Ignored = Callable[[str, str], None]  # (what: unknown_attribute | null_value | unknown_schema, its name)


@dataclass(frozen=True)
class Shape:
    """The attribute names a (complex) attribute or resource defines, lower-cased, with the
    shape of each complex one (None for a simple attribute)."""

    fields: dict[str, Shape | None]


def _complex_type(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as ``list[Email] | None``, if any."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _complex_type(typing.get_args(annotation)[0])
    if origin in (list, typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _complex_type(arg)
            if found is not None:
                return found
        return None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def shape_of(model: type[BaseModel], seen: tuple[type[BaseModel], ...] = ()) -> Shape:
    fields: dict[str, Shape | None] = {}
    for name, info in model.model_fields.items():
        alias = str(info.serialization_alias or info.alias or name)
        inner = _complex_type(info.annotation)
        if inner is not None and inner not in seen and not issubclass(inner, Resource):
            fields[alias.lower()] = shape_of(inner, (*seen, model))
        else:
            fields[alias.lower()] = None
    return Shape(fields)


class ResourceShape:
    """What one resource type defines: its core attributes and its extensions by URN."""

    def __init__(self, model: type[Resource[Any]]):
        self.core = shape_of(model)
        self.core.fields.pop("schemas", None)
        extensions = model.get_extension_models() if hasattr(model, "get_extension_models") else {}
        self.extensions = {urn.lower(): shape_of(ext) for urn, ext in extensions.items()}
        self.urns = {urn.lower(): urn for urn in extensions}
        self.core_urn = str(model.__schema__).lower() if getattr(model, "__schema__", None) else ""

    def knows_schema(self, urn: str) -> bool:
        return urn.lower() == self.core_urn or urn.lower() in self.extensions

    def extension_of(self, attribute: str) -> str | None:
        """The URN of the one extension that defines ``attribute`` (a name the core lacks)."""
        name = attribute.lower()
        if name in self.core.fields:
            return None
        owners = [self.urns[urn] for urn, shape in self.extensions.items() if name in shape.fields]
        return owners[0] if len(owners) == 1 else None


def shapes_of(models: dict[str, type[Resource[Any]]]) -> dict[str, ResourceShape]:
    """The shapes of the resource types by name ("User", "Group"), built once per app."""
    return {name: ResourceShape(model) for name, model in models.items()}


class Lenient:
    """Reads one request's body and filter as described in the module docstring, telling
    ``ignored`` about everything it leaves out."""

    def __init__(self, shapes: dict[str, ResourceShape], ignored: Ignored | None = None):
        self.shapes = shapes
        self.ignored = ignored or (lambda what, name: None)

    # -- entry points ----------------------------------------------------------------


    def body(self, method: str, path: str, document: Any) -> Any:
        """The document of a request to ``path`` (relative to the SCIM root), read leniently."""
        parts = [p for p in path.strip("/").split("/") if p]
        if not parts:
            return document
        if parts[-1].lower() == ".search":
            return self.search(document)
        if parts[0].lower() == "bulk" and method == "POST":
            return self.bulk(document)
        shape = self.shapes.get(RESOURCE_ENDPOINTS.get(parts[0].lower(), ""))
        if shape is None or not isinstance(document, dict):
            return document
        if method == "PATCH" and len(parts) == 2:
            return self.patch(shape, document)
        if (method == "POST" and len(parts) == 1) or (method == "PUT" and len(parts) == 2):
            return self.resource(shape, document)
        return document

    def query(self, query: dict[str, str]) -> dict[str, str]:
        fixed = dict(query)
        for key in query:
            if key.lower() == "filter":
                fixed[key] = quote_bare_values(query[key])
        return fixed

    def search(self, document: Any) -> Any:
        if isinstance(document, dict):
            for key, value in list(document.items()):
                if key.lower() == "filter" and isinstance(value, str):
                    document[key] = quote_bare_values(value)
        return document

    def bulk(self, document: Any) -> Any:
        if not isinstance(document, dict):
            return document
        for key, operations in document.items():
            if key.lower() != "operations" or not isinstance(operations, list):
                continue
            for operation in operations:
                if not isinstance(operation, dict):
                    continue
                method = str(operation.get("method", "")).upper()
                path = operation.get("path")
                if isinstance(path, str) and "data" in operation:
                    operation["data"] = self.body(method, path, operation["data"])
        return document

    # -- resources -------------------------------------------------------------------

    def resource(self, shape: ResourceShape, document: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in document.items():
            lowered = key.lower()
            if lowered == "schemas" and isinstance(value, list):
                known = [urn for urn in value if isinstance(urn, str) and shape.knows_schema(urn)]
                for urn in value:
                    if urn not in known:
                        self.ignored("unknown_schema", str(urn))
                out[key] = known
            elif value is None:
                self.ignored("null_value", key)
            elif lowered in shape.extensions:
                if isinstance(value, dict):
                    out[key] = self._complex(shape.extensions[lowered], value, key)
                else:
                    out[key] = value
            elif lowered == "members" and "members" in shape.core.fields and isinstance(value, list):
                out[key] = [self._complex(shape.core.fields["members"] or Shape({}), m, key) if isinstance(m, dict)
                            else m for m in _members(value)]
            elif lowered in shape.core.fields:
                out[key] = self._value(shape.core.fields[lowered], value, key)
            else:
                self.ignored("unknown_attribute", key)
        return out

    def _value(self, shape: Shape | None, value: Any, name: str) -> Any:
        if shape is None:
            return value
        if isinstance(value, list):
            return [self._complex(shape, item, name) if isinstance(item, dict) else item
                    for item in value if item is not None]
        if isinstance(value, dict):
            return self._complex(shape, value, name)
        return value

    def _complex(self, shape: Shape, value: dict[str, Any], name: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, item in value.items():
            lowered = key.lower()
            if item is None:
                self.ignored("null_value", f"{name}.{key}")
            elif lowered in shape.fields:
                out[key] = self._value(shape.fields[lowered], item, f"{name}.{key}")
            else:
                self.ignored("unknown_attribute", f"{name}.{key}")
        return out

    # -- PATCH -----------------------------------------------------------------------

    def patch(self, shape: ResourceShape, document: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in document.items():
            if key.lower() not in PATCH_MEMBERS:
                self.ignored("unknown_attribute", key)
            elif key.lower() == "operations" and isinstance(value, list):
                out[key] = [fixed for op in value for fixed in self._operation(shape, op)]
            else:
                out[key] = value
        return out

    def _operation(self, shape: ResourceShape, op: Any) -> list[Any]:
        if not isinstance(op, dict):
            return [op]
        fixed: dict[str, Any] = {}
        for key, value in op.items():
            if key.lower() in OPERATION_MEMBERS:
                fixed[key.lower()] = value
            else:
                self.ignored("unknown_attribute", f"Operations.{key}")
        name = str(fixed.get("op", "")).lower()
        path = fixed.get("path")
        if isinstance(path, str):
            path = fixed["path"] = self._path(shape, path)
        if name not in ("add", "replace"):
            return [fixed]
        value = fixed.get("value")
        if isinstance(path, str) and path:
            if value is None or value == "":
                # Replacing by an empty value clears (Entra's "null update", the manager cleared);
                # adding nothing changes nothing (it must not clear: "add members ''" is no removal).
                return [{"op": "remove", "path": path}] if name == "replace" else []
            if path.split("[")[0].lower() == "members":
                fixed["value"] = _members(value)
            return [fixed]
        if not isinstance(value, dict):
            return [fixed]
        empty = [key for key, item in value.items() if item is None or item == ""]
        removals = [{"op": "remove", "path": self._path(shape, key)} for key in empty] if name == "replace" else []
        kept = {key: item for key, item in value.items() if key not in empty}
        if "members" in {key.lower() for key in kept}:
            kept = {key: (_members(item) if key.lower() == "members" else item) for key, item in kept.items()}
        return ([{**fixed, "value": kept}] if kept else []) + removals

    def _path(self, shape: ResourceShape, path: str) -> str:
        """The path with the URN of the extension that defines its attribute, when the path
        names it without one and exactly one extension does; with its filter values quoted."""
        if "[" in path:
            head, _, rest = path.partition("[")
            inner, _, tail = rest.rpartition("]")
            path = f"{head}[{quote_bare_values(inner)}]{tail}"
        if ":" in path.split("[")[0]:
            return path
        attribute = re.split(r"[.\[]", path, maxsplit=1)[0]
        urn = shape.extension_of(attribute)
        return f"{urn}:{path}" if urn else path


def _members(value: Any) -> Any:
    """Group members as RFC 7643 has them: ``{"value": id}``, with ``display``."""
    items = value if isinstance(value, list) else [value]
    out: list[Any] = []
    for item in items:
        if isinstance(item, str):
            out.append({"value": item})
        elif isinstance(item, dict):
            member = {k: v for k, v in item.items() if v is not None}
            if "displayName" in member and "display" not in member:
                member["display"] = member.pop("displayName")
            out.append(member)
        else:
            out.append(item)
    return out if isinstance(value, list) else out[0]


# -- filters ---------------------------------------------------------------------------

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[()\[\]]|[^\s()\[\]"]+|\s+')


def quote_bare_values(text: str) -> str:
    """The filter with each unquoted comparison value quoted as a JSON string, unless it is
    true, false, null or a number (RFC 7644 §3.4.2.2 wants strings quoted; Microsoft's
    examples and test collection send ``externalId eq jyoung``). Anything else is unchanged,
    so a filter that is wrong for another reason still gets its 400 invalidFilter."""
    tokens = _TOKEN.findall(text)
    if "".join(tokens) != text:
        return text
    out: list[str] = []
    words: list[str] = []  # the last two non-space tokens
    for token in tokens:
        if token.isspace():
            out.append(token)
            continue
        if (len(words) == 2 and words[1].lower() in COMPARISONS and words[0] not in "()[]"
                and not words[0].startswith('"') and token not in "()[]" and not token.startswith('"')
                and token.lower() not in BARE_LITERALS and not NUMBER.match(token)):
            token = json.dumps(token)
        out.append(token)
        words = [*words[-1:], token]
    return "".join(out)


def depth(document: Any) -> int:
    """How deeply the arrays and objects of a JSON document nest (a scalar is 0), without
    recursion, so a hostile document cannot exhaust the stack."""
    deepest, stack = 0, [(document, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


def decode(body: bytes) -> Any:
    """The JSON document of a body, or None when it is not JSON (scim2-server says why)."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None
