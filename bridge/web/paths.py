"""Values in URL paths that no row can hold are answered before any route reads the store:
an integer past 64 bits (no driver binds it: a 500 on SQLite) matches no route, and a NUL
(PostgreSQL refuses it in any text: a 500 there) names no resource."""

from __future__ import annotations

from typing import Any

from werkzeug.routing import IntegerConverter, Map

from bridge.store.models import LARGEST_ROW_ID


class RowIdConverter(IntegerConverter):
    """Flask's ``<int:...>``, bounded to what a store can hold: a larger value is a 404
    ("no route"), as a letter there is, instead of an OverflowError in the driver."""

    def __init__(self, map: Map, *args: Any, **kwargs: Any) -> None:  # noqa: A002  # werkzeug's name
        kwargs.setdefault("max", LARGEST_ROW_ID)
        super().__init__(map, *args, **kwargs)


def nul_in_path(view_args: dict[str, Any] | None) -> str | None:
    """The name of the first path value holding a NUL, or None."""
    for name, value in (view_args or {}).items():
        if isinstance(value, str) and "\x00" in value:
            return name
    return None
