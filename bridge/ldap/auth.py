"""Bind authentication: a directory user logs in through dirbridge by a bind as
their own DN, over the source's own pool and TLS settings.

Call contract (for the login API): ``Binder.verify(source, user.ldap_dn,
password)`` returns True for a successful bind, False for wrong credentials (or
an empty password, which LDAP would treat as an *unauthenticated* bind that
"succeeds" without any check, RFC 4513 5.1.2), and raises ``DirectoryUnavailable``
when no server of the source answers, so the caller can answer "try later"
instead of "wrong password". The password is never logged.

A directory that does not answer must not hold the request threads: a login's bind
waits at most ``login_timeout`` per URL; at most ``login_binds`` run at once per source
(more are DirectoryUnavailable at once); and for a few seconds after a source failed
to answer, its logins fail at once instead of waiting again (they count as failures
for the lockout, bridge.accounts.login).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import ldap3
from ldap3.core.exceptions import (
    LDAPBindError,
    LDAPException,
    LDAPInvalidCredentialsResult,
    LDAPInvalidDnError,
    LDAPSASLPrepError,
)

from bridge.config import LdapSourceConfig
from bridge.ldap.connection import UNREACHED, server, tls_settings
from bridge.ldap.errors import LdapProblem

log = logging.getLogger(__name__)


class DirectoryUnavailable(Exception):
    """No server of the source could be reached (or TLS failed): not a wrong password."""


class DirectoryBusy(DirectoryUnavailable):
    """Refused before any bind (the source did not answer a moment ago, or ``login_binds``
    are under way): no password was checked, so it does not count as a failed login."""


#: seconds a source that did not answer is not asked again by logins
DOWN_SECONDS = 5.0


class Binder:
    """The user binds of one process: bounded per source, failing fast while a source is down."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gates: dict[str, threading.BoundedSemaphore] = {}
        self._down_until: dict[str, float] = {}

    def verify(self, source: LdapSourceConfig, user_dn: str, password: str) -> bool:
        """Whether ``password`` is ``user_dn``'s password in ``source``."""
        if not user_dn or not password:
            return False
        if time.monotonic() < self._down_until.get(source.name, 0.0):
            raise DirectoryBusy(f"{source.name}: did not answer a moment ago")
        gate = self._gate(source)
        if not gate.acquire(blocking=False):
            raise DirectoryBusy(f"{source.name}: {source.login_binds} logins are binding already")
        try:
            return verify_password(source, user_dn, password)
        except DirectoryUnavailable:
            self._down_until[source.name] = time.monotonic() + DOWN_SECONDS
            raise
        finally:
            gate.release()

    def _gate(self, source: LdapSourceConfig) -> threading.BoundedSemaphore:
        with self._lock:
            gate = self._gates.get(source.name)
            if gate is None:
                gate = self._gates[source.name] = threading.BoundedSemaphore(source.login_binds)
            return gate


class BindRefused(Exception):
    """A server of the source answered the bind with a refusal: ``result`` is its answer."""

    def __init__(self, result: Mapping[str, Any]) -> None:
        super().__init__(result.get("description"))
        self.result = result


def bind_as(source: LdapSourceConfig, dn: str, password: str, *, controls: list[tuple[str, bool, Any]] | None = None,
            read_only: bool = True) -> ldap3.Connection:
    """A connection bound as ``dn`` to the first of the source's URLs that answers, each
    given ``login_timeout`` to connect and to answer (someone waits on it: a login, a
    password change): BindRefused with the directory's answer, DirectoryUnavailable when no
    URL answers. Not ldap3's ServerPool: it sleeps 10 s after its last round, so a closed
    port held a login that long."""
    try:
        tls = tls_settings(source)
    except LdapProblem as exc:  # a CA file that cannot be read: no bind can be tried
        raise DirectoryUnavailable(f"{source.name}: {exc}") from None
    failed = "no URL"
    for url in source.url:
        conn = ldap3.Connection(server(source, url, tls, connect_timeout=source.login_timeout), user=dn,
                                password=password, receive_timeout=source.login_timeout, raise_exceptions=False,
                                read_only=read_only)
        try:
            conn.open()
            if source.tls.mode == "starttls" and not conn.start_tls():
                raise DirectoryUnavailable(f"{source.name}: StartTLS failed")  # never bind in clear
            if conn.bind(controls=controls):
                return conn
        except UNREACHED as exc:  # the next URL may answer
            unbind_quietly(conn)
            failed = type(exc).__name__
            continue
        except (LDAPBindError, LDAPInvalidCredentialsResult, LDAPSASLPrepError, LDAPInvalidDnError):
            # SASLprep: characters no password may hold (control characters); a DN that does not parse
            unbind_quietly(conn)
            raise BindRefused({"description": "invalidCredentials"}) from None
        except LDAPException as exc:
            unbind_quietly(conn)
            raise DirectoryUnavailable(f"{source.name}: {type(exc).__name__}") from None
        except BaseException:
            unbind_quietly(conn)
            raise
        result = dict(conn.result)
        unbind_quietly(conn)
        raise BindRefused(result)
    raise DirectoryUnavailable(f"{source.name}: {failed}")


def unbind_quietly(conn: ldap3.Connection) -> None:
    try:
        conn.unbind()
    except LDAPException:
        pass


def verify_password(source: LdapSourceConfig, user_dn: str, password: str) -> bool:
    """Whether ``password`` is ``user_dn``'s password in ``source`` (one bind, unbounded:
    logins go through ``Binder.verify``)."""
    if not user_dn or not password:
        return False
    try:
        unbind_quietly(bind_as(source, user_dn, password))
        return True
    except BindRefused as refused:
        description = refused.result.get("description")
        if description in ("busy", "unavailable"):
            raise DirectoryUnavailable(f"{source.name}: {description}") from None
        if description not in ("invalidCredentials", "invalidDNSyntax", "noSuchObject"):
            log.info("LDAP bind refused for a user of %s: %s", source.name, description,
                     extra={"source": source.name})
        return False
