"""The secret that seals SCIM paging cursors (RFC 9865; scim2_server.cursor.Cursors).

``scim.cursor_secret`` (or ``_file``, ``_env``, ``_credential``) when set. Else a
random secret kept in ``DATA_DIR/scim-cursor.secret``, made on first use,
readable by the daemon's user alone (0600), as ``status.session_secret`` falls
back to ``DATA_DIR/session.secret``: every process with that data directory
agrees on it, and it survives restarts. Replicas on PostgreSQL have a data
directory each, so they need ``scim.cursor_secret``, the same on all of them
(else a cursor one replica gave is refused by the next with 400 invalidCursor).

The store holds no secret (no settings table to keep one in), and a secret in
the database would be read by anyone with a backup of it.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from bridge.config import Config
from bridge.files import private_dir

log = logging.getLogger("bridge.scim")
SECRET_FILE = "scim-cursor.secret"
MIN_LENGTH = 16


def cursor_secret(config: Config) -> bytes:
    configured = config.scim.cursor_secret
    if configured is not None:
        return configured.get_secret_value().encode()
    if not config.database_url.startswith("sqlite"):
        log.info("scim.cursor_secret is not set: cursors are sealed with %s; replicas sharing the "
                 "database need scim.cursor_secret, the same on each", Path(config.data_dir) / SECRET_FILE)
    return _kept_secret(Path(config.data_dir) / SECRET_FILE)


def _read(path: Path) -> bytes:
    text = path.read_text(encoding="utf-8").strip()
    if len(text) < MIN_LENGTH:
        raise RuntimeError(f"{path} holds no usable secret (fewer than {MIN_LENGTH} characters): "
                           "delete it to make a new one, or set scim.cursor_secret")
    return text.encode()


def _kept_secret(path: Path) -> bytes:
    """The secret in ``path``, made (0600) when there is none. The file appears whole or not
    at all (written aside, then linked into place), so a concurrent process never reads half."""
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    secret = secrets.token_hex(32)
    aside = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        private_dir(path.parent)
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secret + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(aside, path)
        except FileExistsError:  # another process made it meanwhile: theirs is the one
            return _read(path)
        finally:
            aside.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("cannot keep the SCIM cursor secret in %s (%s): cursors stop working when this "
                    "process ends; set scim.cursor_secret", path, exc.strerror)
    return secret.encode()
