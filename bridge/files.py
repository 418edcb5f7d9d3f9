"""Files and directories the daemon creates hold secrets (the SQLite store with its
hashes and TOTP seeds, the session and cursor secrets), so they are the daemon's
user's alone: directories 0700, files 0600, whatever the umask it was started with."""

from __future__ import annotations

import logging
import os
import secrets
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
    if stat.S_ISDIR(info.st_mode) and info.st_mode & (stat.S_ISVTX | stat.S_IWOTH):
        # a shared directory (/tmp, say, holding a SQLite file): everyone's, even when we own it
        log.warning("%s is a shared directory: what dirbridge keeps in it is private, the directory "
                    "stays as it is", path)
        return
    try:
        os.chmod(path, mode)
    except OSError as exc:
        log.warning("cannot make %s private (%s)", path, exc.strerror)


def kept_secret(path: Path, min_length: int, instead: str, otherwise: str) -> bytes:
    """The secret kept in ``path`` (hex, one line), made (0600) when there is none. The
    file appears whole or not at all (written aside, then linked into place), so a
    concurrent process never reads half, and two that start at once agree on one.
    ``instead`` says which config key replaces a broken file; ``otherwise`` what breaks
    when the file cannot be written (the secret then lives as long as the process)."""
    try:
        return _read_secret(path, min_length, instead)
    except FileNotFoundError:
        pass
    secret = secrets.token_hex(32)
    aside = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        private_dir(path.parent)
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secret + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(aside, path)
        except FileExistsError:  # another process made it meanwhile: theirs is the one
            return _read_secret(path, min_length, instead)
        finally:
            aside.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("cannot keep a secret in %s (%s): %s", path, exc.strerror, otherwise)
    return secret.encode()


def _read_secret(path: Path, min_length: int, instead: str) -> bytes:
    text = path.read_text(encoding="utf-8").strip()
    if len(text) < min_length:
        raise RuntimeError(f"{path} holds no usable secret (fewer than {min_length} characters): "
                           f"delete it to make a new one, or {instead}")
    return text.encode()
