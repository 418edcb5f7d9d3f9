"""The service layer is the only write path: no module outside bridge/services and
bridge/store writes a table. Read from the source (every module, every way SQLAlchemy
writes) and watched while the whole suite runs (tests/fixtures/write_path.py); here the
watch is shown to catch each kind of write an adapter could make."""

from __future__ import annotations

import ast
from pathlib import Path

from bridge.services import Actor
from bridge.store.models import AuditEvent, GroupUserMember, User
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
        if (isinstance(node, ast.Attribute) and node.attr in DML and isinstance(node.value, ast.Name)
                and node.value.id in {"sa", "sqlalchemy"}):
            found.append(f"{node.lineno}: uses {node.value.id}.{node.attr}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            receiver = node.func.value
            name = receiver.attr if isinstance(receiver, ast.Attribute) else getattr(receiver, "id", "")
            if node.func.attr == "write" and name.endswith("store"):
                found.append(f"{node.lineno}: opens a write transaction")
            if node.func.attr in SESSION_WRITES and (name in {"db", "s"} or name.endswith("session")):
                found.append(f"{node.lineno}: session.{node.func.attr}")
            if node.func.attr == "begin" and name.endswith("engine"):  # engine.connect() reads (mapping)
                found.append(f"{node.lineno}: opens the engine")
        if (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "text"
                and node.args and isinstance(node.args[0], ast.Constant)
                and str(node.args[0].value).lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))):
            found.append(f"{node.lineno}: text() that writes")
    return found


def test_no_module_outside_the_services_and_the_store_writes() -> None:
    modules = [p for p in BRIDGE.rglob("*.py") if not any(p.is_relative_to(a) for a in ALLOWED)]
    assert len(modules) > 50
    writes = {str(p.relative_to(REPO)): w for p in modules if (w := _writes_in(p))}
    assert writes == {}


def test_the_reading_of_the_source_finds_a_write() -> None:
    probe = REPO / "bridge" / "web" / "probe_does_not_exist.py"
    source = ("from sqlalchemy import delete\nimport sqlalchemy as sa\n"
              "def purge(rt):\n    with rt.store.write() as session:\n        session.add(object())\n"
              "        sa.update(None)\n        s.delete(x)\n        rt.store.engine.begin()\n"
              "        session.execute(text('DELETE FROM users'))\n")
    tree_path = Path(probe)
    try:
        tree_path.write_text(source)
        assert sorted(w.split(": ", 1)[1] for w in _writes_in(tree_path)) == [
            "imports delete", "opens a write transaction", "opens the engine", "session.add", "session.delete",
            "text() that writes", "uses sa.update"]
    finally:
        tree_path.unlink()


def test_the_watch_catches_each_kind_of_write_from_an_adapter(runtime) -> None:
    with runtime.services.unit(Actor(name="test")) as uow:
        user_id = uow.users.create(user_name="watched", email="watched@example.org").id
        group_id = uow.groups.create("watched group").id
    adapter = compile(
        "def write_everything(store, user_id, group_id, User, AuditEvent, Member):\n"
        "    from sqlalchemy import insert, text, update\n"
        "    with store.write() as session:\n"
        "        session.add(AuditEvent(actor='x', source='local', channel='x', action='x', target_type='x'))\n"
        "        session.get(User, user_id).display_name = 'changed'\n"
        "        session.execute(update(User).where(User.id == user_id).values(display_name='t'))\n"
        "        session.execute(text('UPDATE users SET timezone = :tz WHERE id = :id'),\n"
        "                        {'tz': 'UTC', 'id': user_id})\n"
        "        session.execute(insert(AuditEvent), [{'actor': 'x', 'source': 'local', 'channel': 'x',\n"
        "                                               'action': 'x', 'target_type': 'x'}])\n"
        "        user = session.get(User, user_id)\n"
        "        user.memberships.append(Member(group_id=group_id, user_id=user_id))\n"
        "        session.delete(session.get(User, user_id))\n",
        str(BRIDGE / "web" / "adapter_probe.py"), "exec")
    namespace: dict[str, object] = {}
    exec(adapter, namespace)  # noqa: S102 - code that claims to live in bridge/web
    before = len(WATCH.violations)
    try:
        namespace["write_everything"](runtime.store, user_id, group_id, User, AuditEvent,  # type: ignore[operator]
                                      GroupUserMember)
        caught = WATCH.violations[before:]
    finally:
        del WATCH.violations[before:]  # the probe's writes are this test's, not the suite's
    assert sorted(c.split(" ", 1)[1] for c in caught) == sorted([
        "adds a AuditEvent", "sets User.display_name", "runs UPDATE on users", "runs UPDATE on users",
        "runs INSERT on audit_events", "appends to User.memberships",
        "adds a GroupUserMember", "deletes a User"]), caught
    assert all(c.startswith("bridge/web/adapter_probe.py:") for c in caught)
