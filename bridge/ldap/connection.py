"""ldap3 connections to a configured source: its URLs tried in order, TLS verified by default.

ldap3's own default is not to verify certificates (``CERT_NONE``); dirbridge
always builds a ``Tls`` object that requires a valid certificate, from the
system store or the configured CA file. ``tls.mode = "none"`` must be chosen
explicitly and is logged as a warning each time a connection is made.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

import ldap3
from ldap3.core.exceptions import (
    LDAPException,
    LDAPOperationResult,
    LDAPSessionTerminatedByServerError,
    LDAPSocketOpenError,
    LDAPSocketReceiveError,
    LDAPSSLConfigurationError,
    LDAPStartTLSError,
)

from bridge.config import LdapSourceConfig
from bridge.ldap.errors import DirectoryUnreachable, LdapProblem, Unreached, explain, unreached

log = logging.getLogger(__name__)

#: what makes a URL unusable (the next one may do): no socket, no TLS, no answer
UNREACHED = (LDAPSocketOpenError, LDAPStartTLSError, LDAPSocketReceiveError, LDAPSessionTerminatedByServerError)


def tls_settings(source: LdapSourceConfig) -> ldap3.Tls | None:
    if source.tls.mode == "none":
        return None
    ca_file = source.tls.ca_file
    if ca_file is not None:
        try:
            ca_file.read_bytes()
        except OSError as exc:
            raise LdapProblem(f"tls.ca_file {str(ca_file)!r} of [[ldap.sources]] {source.name} cannot be read: "
                              f"{exc.strerror or exc}") from None
    try:
        return _tls(source)
    except LDAPSSLConfigurationError:
        raise LdapProblem(f"tls.ca_file {str(ca_file)!r} of [[ldap.sources]] {source.name} holds no CA "
                          "certificate (PEM) that can be loaded") from None


def _tls(source: LdapSourceConfig) -> ldap3.Tls:
    return ldap3.Tls(
        validate=ssl.CERT_REQUIRED if source.tls.verify else ssl.CERT_NONE,
        version=ssl.PROTOCOL_TLS_CLIENT,
        ca_certs_file=str(source.tls.ca_file) if source.tls.ca_file else None,
    )


def server(source: LdapSourceConfig, url: str, tls: ldap3.Tls | None,
           connect_timeout: float | None = None) -> ldap3.Server:
    """One of the source's URLs as ldap3 connects to it (``connect_timeout``: the source's,
    unless a caller needs a shorter one, as user logins do)."""
    return ldap3.Server(url, use_ssl=url.startswith("ldaps://"), tls=tls, get_info=ldap3.NONE,
                        connect_timeout=source.connect_timeout if connect_timeout is None else connect_timeout)


def warn_insecure(source: LdapSourceConfig) -> None:
    """The warning each connection without TLS, or without a verified certificate, logs
    (bridge.ldap.creader's connections too)."""
    if source.tls.mode == "none":
        what = "the bind password and the entries cross" if source.bind_dn else "the entries cross"
        log.warning("LDAP source %s uses no TLS: %s the network in clear", source.name, what,
                    extra={"source": source.name})
    elif not source.tls.verify:
        log.warning("LDAP source %s does not verify the server certificate: anyone on the path can pose "
                    "as the directory", source.name, extra={"source": source.name})


def connect(source: LdapSourceConfig) -> ldap3.Connection:
    """A bound connection (StartTLS first when configured) to the first of the source's
    URLs that answers; raises DirectoryUnreachable naming why each URL failed, LdapProblem
    for a TLS setting that cannot work, and LDAPException for what the directory refused."""
    warn_insecure(source)
    if source.tls.mode == "ldaps" or source.tls.mode == "none":
        auto_bind = ldap3.AUTO_BIND_NO_TLS
    else:
        auto_bind = ldap3.AUTO_BIND_TLS_BEFORE_BIND
    password = source.bind_password.get_secret_value() if source.bind_password else None
    tls = tls_settings(source)
    tried: list[Unreached] = []
    for url in source.url:  # in order: the first that answers (each fails within connect_timeout)
        got = _attempt(source, url, tls, auto_bind, password)
        if isinstance(got, Unreached):
            tried.append(got)
        else:
            return got
    raise DirectoryUnreachable(source.name, tried)


def _attempt(source: LdapSourceConfig, url: str, tls: ldap3.Tls | None, auto_bind: Any,
             password: str | None) -> ldap3.Connection | Unreached:
    """A bound connection to ``url``, or why it cannot be used; what the directory refused
    (a bind) is raised: the next URL would say the same."""
    try:
        return ldap3.Connection(
            server(source, url, tls),
            user=source.bind_dn,
            password=password,
            auto_bind=auto_bind,
            receive_timeout=source.receive_timeout,
            raise_exceptions=True,
            read_only=not source.writeback.enabled,
        )
    except LDAPOperationResult:  # the directory answered (a refused bind)
        raise
    except UNREACHED as exc:  # the next URL may answer
        return unreached(url, exc, source)
    except (LDAPException, KeyError, ValueError, IndexError, TypeError) as exc:  # an answer ldap3 cannot read
        return Unreached(url, f"it answered, but not as an LDAP server ({type(exc).__name__})")


def why_unreached(source: LdapSourceConfig, url: str) -> Unreached | None:
    """Why ldap3 cannot use ``url`` of ``source`` (None when it can): how the libldap reader
    (bridge.ldap.creader) words its own failures, which libldap leaves vague."""
    auto_bind = ldap3.AUTO_BIND_TLS_BEFORE_BIND if source.tls.mode == "starttls" else ldap3.AUTO_BIND_NO_TLS
    password = source.bind_password.get_secret_value() if source.bind_password else None
    try:
        got = _attempt(source, url, tls_settings(source), auto_bind, password)
    except LDAPOperationResult:
        return None
    if isinstance(got, Unreached):
        return got
    got.unbind()
    return None


def check_bind(source: LdapSourceConfig) -> tuple[bool, str]:
    """Try to bind as the configured service account; (ok, what happened)."""
    try:
        conn = connect(source)
    except LDAPException as exc:  # LdapProblem too: an explained LDAPException
        return False, explain(exc, source)
    try:
        who = conn.extend.standard.who_am_i() or source.bind_dn or "anonymous"
    except LDAPException:
        who = source.bind_dn or "anonymous"
    finally:
        conn.unbind()
    return True, f"bound as {who}"
