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
from pathlib import Path

from bridge.config import Config
from bridge.files import kept_secret

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


def _kept_secret(path: Path) -> bytes:
    return kept_secret(path, MIN_LENGTH, "set scim.cursor_secret",
                       "cursors stop working when this process ends; set scim.cursor_secret")
