"""Request-body fixes for what real IdPs send that RFC 7644 does not quite allow.

Each fix turns the IdP's form into the standard one before scim2-server parses
the request, so the protocol code stays standard:

- Entra ID sends the enterprise ``manager`` as the manager's id (or a list of
  one ``{"value": id}``) instead of the complex ``{"value": id}``.
- Entra ID removes group members with ``{"op": "Remove", "path": "members",
  "value": [{"value": id}, ...]}``; RFC 7644 §3.5.2.2 selects them with a
  filter, ``members[value eq "id"]``, one operation per member.

Capitalised ops ("Replace") and booleans as strings ("False") are already
accepted by scim2-models.
"""

from __future__ import annotations

import json
from typing import Any

MANAGER = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user:manager"


def _manager_value(value: Any) -> Any:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, str):
        return {"value": value}
    return value


def _quote(value: str) -> str:
    return json.dumps(value)


def fix_operations(operations: list[Any]) -> list[Any]:
    fixed: list[Any] = []
    for op in operations:
        if not isinstance(op, dict):
            fixed.append(op)
            continue
        name = str(op.get("op", "")).lower()
        path = op.get("path")
        path_key = path.lower() if isinstance(path, str) else None
        if path_key == MANAGER and name in ("add", "replace"):
            op = {**op, "value": _manager_value(op.get("value"))}
        elif path is None and isinstance(op.get("value"), dict):
            value = {k: (_manager_value(v) if k.lower() == MANAGER else v) for k, v in op["value"].items()}
            op = {**op, "value": value}
        elif path_key == "members" and name == "remove" and isinstance(op.get("value"), list):
            for member in op["value"]:
                member_id = member.get("value") if isinstance(member, dict) else member
                if isinstance(member_id, str):
                    fixed.append({"op": "remove", "path": f"members[value eq {_quote(member_id)}]"})
            continue
        fixed.append(op)
    return fixed


def fix_patch(document: Any) -> Any:
    if isinstance(document, dict):
        for key in list(document):
            if key.lower() == "operations" and isinstance(document[key], list):
                document[key] = fix_operations(document[key])
    return document


def fix_bulk(document: Any) -> Any:
    if isinstance(document, dict):
        for key in list(document):
            if key.lower() == "operations" and isinstance(document[key], list):
                for operation in document[key]:
                    if isinstance(operation, dict) and str(operation.get("method", "")).upper() == "PATCH":
                        fix_patch(operation.get("data"))
    return document


def fix_body(method: str, path: str, body: bytes) -> bytes:
    """The body with the IdP quirks above made standard; anything unreadable unchanged."""
    if not body or method not in ("PATCH", "POST"):
        return body
    is_bulk = path.rstrip("/").lower().endswith("/bulk")
    if method == "POST" and not is_bulk:
        return body
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # scim2-server answers 400 for either
        return body
    document = fix_bulk(document) if is_bulk else fix_patch(document)
    return json.dumps(document).encode()
