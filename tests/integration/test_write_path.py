"""The service layer is the only write path: no module outside bridge/services and
bridge/store writes a table. Read from the source (every module, every way SQLAlchemy
writes) and watched while the whole suite runs (tests/fixtures/write_path.py); here the
watch is shown to catch each kind of write an adapter could make."""

from __future__ import annotations

import ast
from pathlib import Path

from sqlalchemy import select

from bridge.services import Actor
from bridge.store.models import AuditEvent, User
from tests.fixtures.write_path import ALLOWED, BRIDGE, REPO, WATCH

DML = {"insert", "update", "delete"}
SESSION_WRITES = {"add", "add_all", "delete", "merge", "bulk_save_objects", "bulk_insert_mappings",
                  "bulk_update_mappings"}


def _writes_in(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
            found += [f"{node.lineno}: imports {a.name}" for a in node.names if a.name in DML]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            receiver = node.func.value
            name = receiver.attr if isinstance(receiver, ast.Attribute) else getattr(receiver, "id", "")
            if node.func.attr == "write" and name.endswith("store"):
                found.append(f"{node.lineno}: opens a write transaction")
            if node.func.attr in SESSION_WRITES and name in {"session", "db"}:
                found.append(f"{node.lineno}: session.{node.func.attr}")
    return found


def test_no_module_outside_the_services_and_the_store_writes() -> None:
    modules = [p for p in BRIDGE.rglob("*.py") if not any(p.is_relative_to(a) for a in ALLOWED)]
    assert len(modules) > 50
    writes = {str(p.relative_to(REPO)): w for p in modules if (w := _writes_in(p))}
    assert writes == {}


def test_the_reading_of_the_source_finds_a_write() -> None:
    probe = REPO / "bridge" / "web" / "probe_does_not_exist.py"
    source = ("from sqlalchemy import delete\n"
              "def purge(rt):\n    with rt.store.write() as session:\n        session.add(object())\n")
    tree_path = Path(probe)
    try:
        tree_path.write_text(source)
        assert [w.split(": ", 1)[1] for w in _writes_in(tree_path)] == [
            "imports delete", "opens a write transaction", "session.add"]
    finally:
        tree_path.unlink()


def test_the_watch_catches_each_kind_of_write_from_an_adapter(runtime) -> None:
    with runtime.services.unit(Actor(name="test")) as uow:
        user_id = uow.users.create(user_name="watched", email="watched@example.org").id
    adapter = compile(
        "def write_everything(store, user_id, User, AuditEvent, select):\n"
        "    from sqlalchemy import update\n"
        "    with store.write() as session:\n"
        "        session.add(AuditEvent(actor='x', source='local', channel='x', action='x', target_type='x'))\n"
        "        session.get(User, user_id).display_name = 'changed'\n"
        "        session.execute(update(User).where(User.id == user_id).values(display_name='t'))\n",
        str(BRIDGE / "web" / "adapter_probe.py"), "exec")
    namespace: dict[str, object] = {}
    exec(adapter, namespace)  # noqa: S102 - code that claims to live in bridge/web
    before = len(WATCH.violations)
    try:
        namespace["write_everything"](runtime.store, user_id, User, AuditEvent, select)  # type: ignore[operator]
        caught = WATCH.violations[before:]
    finally:
        del WATCH.violations[before:]  # the probe's writes are this test's, not the suite's
    assert [c.split(" ", 1)[1] for c in caught] == [
        "adds a AuditEvent", "sets User.display_name", "runs UPDATE on users"], caught
    assert all(c.startswith("bridge/web/adapter_probe.py:") for c in caught)
