"""Files and directories the daemon creates hold secrets (the SQLite store with its
hashes and TOTP seeds, the session and cursor secrets), so they are the daemon's
user's alone: directories 0700, files 0600, whatever the umask it was started with."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)
DIR_MODE, FILE_MODE = 0o700, 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` (and its missing parents) 0700; one of ours that others may read
    (made by an older version, or under a loose umask) is tightened."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    _tighten(path, DIR_MODE)
    return path


def private_file(path: Path) -> None:
    """Tighten a file the daemon made (or a library made for it: SQLite's database, WAL
    and shared-memory files) to 0600; a missing file is fine."""
    _tighten(path, FILE_MODE)


def _tighten(path: Path, mode: int) -> None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077 == 0:
        return  # not ours to change, or private already
    try:
        os.chmod(path, mode)
    except OSError as exc:
        log.warning("cannot make %s private (%s)", path, exc.strerror)
