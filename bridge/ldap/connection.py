"""ldap3 connections to a configured source: failover pool, TLS verified by default.

ldap3's own default is not to verify certificates (``CERT_NONE``); dirbridge
always builds a ``Tls`` object that requires a valid certificate, from the
system store or the configured CA file. ``tls.mode = "none"`` must be chosen
explicitly and is logged as a warning each time a connection is made.
"""

from __future__ import annotations

import logging
import ssl

import ldap3
from ldap3.core.exceptions import LDAPException

from bridge.config import LdapSourceConfig

log = logging.getLogger(__name__)


def tls_settings(source: LdapSourceConfig) -> ldap3.Tls | None:
    if source.tls.mode == "none":
        return None
    return ldap3.Tls(
        validate=ssl.CERT_REQUIRED if source.tls.verify else ssl.CERT_NONE,
        version=ssl.PROTOCOL_TLS_CLIENT,
        ca_certs_file=str(source.tls.ca_file) if source.tls.ca_file else None,
    )


def server_pool(source: LdapSourceConfig) -> ldap3.ServerPool:
    """One server per URL, tried in order; a dead one is skipped for a while."""
    tls = tls_settings(source)
    servers = [
        ldap3.Server(
            url,
            use_ssl=url.startswith("ldaps://"),
            tls=tls,
            get_info=ldap3.NONE,
            connect_timeout=source.connect_timeout,
        )
        for url in source.url
    ]
    return ldap3.ServerPool(servers, ldap3.FIRST, active=1, exhaust=60)


def connect(source: LdapSourceConfig) -> ldap3.Connection:
    """A bound connection (StartTLS first when configured); raises LDAPException."""
    if source.tls.mode == "none":
        log.warning("LDAP source %s uses no TLS: the bind password crosses the network in clear", source.name,
                    extra={"source": source.name})
    elif not source.tls.verify:
        log.warning("LDAP source %s does not verify the server certificate: anyone on the path can pose "
                    "as the directory", source.name, extra={"source": source.name})
    if source.tls.mode == "ldaps" or source.tls.mode == "none":
        auto_bind = ldap3.AUTO_BIND_NO_TLS
    else:
        auto_bind = ldap3.AUTO_BIND_TLS_BEFORE_BIND
    password = source.bind_password.get_secret_value() if source.bind_password else None
    return ldap3.Connection(
        server_pool(source),
        user=source.bind_dn,
        password=password,
        auto_bind=auto_bind,
        receive_timeout=source.receive_timeout,
        raise_exceptions=True,
        read_only=not source.writeback.enabled,
    )


def check_bind(source: LdapSourceConfig) -> tuple[bool, str]:
    """Try to bind as the configured service account; (ok, what happened)."""
    try:
        conn = connect(source)
    except LDAPException as exc:
        return False, f"{type(exc).__name__}: {exc}"
    try:
        who = conn.extend.standard.who_am_i() or source.bind_dn or "anonymous"
    except LDAPException:
        who = source.bind_dn or "anonymous"
    finally:
        conn.unbind()
    return True, f"bound as {who}"
