"""Bind authentication: a directory user logs in through dirbridge by a bind as
their own DN, over the source's own pool and TLS settings.

Call contract (for the login API): ``verify_password(source, user.ldap_dn,
password)`` returns True for a successful bind, False for wrong credentials (or
an empty password, which LDAP would treat as an *unauthenticated* bind that
"succeeds" without any check, RFC 4513 5.1.2), and raises ``DirectoryUnavailable``
when no server of the source answers, so the caller can answer "try later"
instead of "wrong password". The password is never logged.
"""

from __future__ import annotations

import logging

import ldap3
from ldap3.core.exceptions import LDAPBindError, LDAPException, LDAPInvalidCredentialsResult, LDAPSASLPrepError

from bridge.config import LdapSourceConfig
from bridge.ldap.connection import server_pool

log = logging.getLogger(__name__)


class DirectoryUnavailable(Exception):
    """No server of the source could be reached (or TLS failed): not a wrong password."""


def verify_password(source: LdapSourceConfig, user_dn: str, password: str) -> bool:
    """Whether ``password`` is ``user_dn``'s password in ``source``."""
    if not user_dn or not password:
        return False
    conn = ldap3.Connection(
        server_pool(source),
        user=user_dn,
        password=password,
        receive_timeout=source.receive_timeout,
        raise_exceptions=False,
        read_only=True,
    )
    try:
        conn.open()
        if source.tls.mode == "starttls" and not conn.start_tls():
            raise DirectoryUnavailable(f"{source.name}: StartTLS failed")  # never bind in clear
        if conn.bind():
            return True
        if conn.result.get("description") in ("invalidCredentials", "invalidDNSyntax", "noSuchObject"):
            return False
        log.info("LDAP bind refused for a user of %s: %s", source.name, conn.result.get("description"),
                 extra={"source": source.name})
        return False
    except (LDAPBindError, LDAPInvalidCredentialsResult, LDAPSASLPrepError):
        return False  # SASLprep: characters no password may hold (control characters): a wrong password
    except LDAPException as exc:
        raise DirectoryUnavailable(f"{source.name}: {type(exc).__name__}") from None
    finally:
        try:
            conn.unbind()
        except LDAPException:
            pass
