"""The runtime an in-process bench measures: built as `dirbridge serve` builds it, on
SQLite in a throwaway directory or on ``--database``, with a SCIM token for its requests."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any


def scim_runtime(database: str | None, prefix: str) -> tuple[Any, str]:
    """(the runtime, a SCIM client token named "bench")."""
    from bridge.config import load_config_data
    from bridge.runtime import build_runtime
    from bridge.services import Actor

    work = Path(tempfile.mkdtemp(prefix=prefix))
    tables: dict[str, Any] = {"data_dir": str(work / "data"), "logging": {"level": "warning"}}
    if database:
        tables["database"] = {"url": database, "auto_migrate": True}
    rt = build_runtime(load_config_data(tables))
    with rt.services.unit(Actor(name="bench")) as uow:
        token = uow.tokens.create("bench", "scim")[1]
    return rt, token
