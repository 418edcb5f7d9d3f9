"""What went wrong with a directory, in the words an IT admin acts on.

ldap3 reports a wrong password and a wrong bind DN alike, a refused port and an unknown
host alike (after the pool's retries), and a certificate it does not trust as an SSL
wrapping error. ``explain`` turns each into what happened and what to do, naming the
config key and the value concerned: the sync's run record, the status page, the CLI and
the logs all show this text.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass

from ldap3.core import exceptions as lx

from bridge.config import LdapSourceConfig


class LdapProblem(lx.LDAPException):  # type: ignore[misc]  # ldap3 ships no types
    """A directory problem already explained (its text is what to show). An LDAPException,
    so every place that handles a directory failure (write-back, logins, the read-ahead
    process) handles it; plain, so it crosses from the read-ahead process intact."""


@dataclass(frozen=True)
class Unreached:
    """One URL that could not be used, and why."""

    url: str
    reason: str


class DirectoryUnreachable(LdapProblem):
    """No URL of the source answered."""

    def __init__(self, source: str, tried: Sequence[Unreached]):
        self.tried = list(tried)
        where = "; ".join(f"{t.url}: {t.reason}" for t in self.tried)
        super().__init__(f"cannot reach the directory of {source}: {where}")

    def __reduce__(self) -> tuple[type[LdapProblem], tuple[str]]:
        """Across processes (the read-ahead child) as the plain problem with its text."""
        return LdapProblem, (str(self),)


def _key(source: LdapSourceConfig, name: str) -> str:
    return f"{name} of [[ldap.sources]] {source.name}"


def unreached(url: str, exc: BaseException, source: LdapSourceConfig) -> Unreached:
    """Why ``url`` could not be used: refused, timed out, name not resolved, certificate."""
    text = str(exc)
    if "NO_CERTIFICATE_OR_CRL_FOUND" in text or "X509" in text and source.tls.ca_file:
        return Unreached(url, f"tls.ca_file {str(source.tls.ca_file)!r} holds no CA certificate (PEM) that "
                              "can be loaded")
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        fix = (f"tls.ca_file {str(source.tls.ca_file)!r} did not sign it" if source.tls.ca_file
               else "set tls.ca_file to the CA that signed it")
        return Unreached(url, f"its TLS certificate is not trusted ({fix})")
    if "hostname" in text and "mismatch" in text or "doesn't match" in text or "IP address mismatch" in text:
        return Unreached(url, "its TLS certificate names another host (use the name the certificate has)")
    if isinstance(exc, lx.LDAPSessionTerminatedByServerError):
        return Unreached(url, "it closed the connection without an LDAP answer (not an LDAP server on that "
                              "port, or one that refuses this client)")
    if isinstance(exc, lx.LDAPSocketReceiveError):
        return Unreached(url, f"it took the connection but gave no LDAP answer within receive_timeout "
                              f"({source.receive_timeout} s)")
    if "refused" in text.lower():
        return Unreached(url, "connection refused (nothing listens on that port)")
    if "timed out" in text.lower() or isinstance(exc, TimeoutError | socket.timeout):
        return Unreached(url, f"no answer within connect_timeout ({source.connect_timeout:g} s)")
    if ("Name or service not known" in text or "not known" in text or "getaddrinfo" in text
            or "Temporary failure in name resolution" in text or "invalid server address" in text):
        return Unreached(url, "the host name does not resolve")
    if "unreachable" in text.lower():
        return Unreached(url, "no route to the host")
    return Unreached(url, f"{type(exc).__name__}: {text}")


def explain(exc: BaseException, source: LdapSourceConfig) -> str:
    """What happened and what to do, for an error of ``source``'s directory."""
    if isinstance(exc, LdapProblem):
        return str(exc)
    if isinstance(exc, lx.LDAPInvalidCredentialsResult):
        who = source.bind_dn or "(anonymous)"
        return (f"the directory refused the bind of {who!r}: invalid credentials, a wrong bind_password or no "
                f"entry at bind_dn (the directory does not say which); check bind_dn and bind_password of "
                f"[[ldap.sources]] {source.name}")
    if isinstance(exc, lx.LDAPInsufficientAccessRightsResult):
        return (f"{source.bind_dn or 'the anonymous bind'} may not do this in the directory: give the bind DN "
                f"read access to users_base and groups_base ({_key(source, 'bind_dn')})")
    if isinstance(exc, lx.LDAPSizeLimitExceededResult):
        return (f"the directory's size limit stopped the search: allow {source.bind_dn or 'the bind DN'} more "
                f"entries (OpenLDAP olcLimits, 389-DS nsSizeLimit, AD MaxPageSize) or lower page_size")
    if isinstance(exc, lx.LDAPTimeLimitExceededResult | lx.LDAPAdminLimitExceededResult):
        return (f"the directory's time or admin limit stopped the search: raise the limits of "
                f"{source.bind_dn or 'the bind DN'} or narrow users_base and the filters")
    if isinstance(exc, lx.LDAPNoSuchObjectResult):
        return ("the directory has no entry at a base this source searches: check users_base and groups_base "
                f"of [[ldap.sources]] {source.name} ({exc})")
    if isinstance(exc, lx.LDAPSocketReceiveError) or "timed out" in str(exc).lower():
        return (f"the directory stopped answering (receive_timeout {source.receive_timeout} s): "
                f"{type(exc).__name__}: {exc}")
    if isinstance(exc, lx.LDAPSessionTerminatedByServerError):
        return f"the directory closed the connection: {exc}"
    return f"{type(exc).__name__}: {exc}"


def base_not_found(source: LdapSourceConfig, key: str, base: str, exc: lx.LDAPNoSuchObjectResult) -> LdapProblem:
    """A search base the directory does not have, named by its key."""
    matched = getattr(exc, "dn", None) or ""
    near = f" (the nearest entry it has is {matched!r})" if matched else ""
    return LdapProblem(f"{key} {base!r} does not exist in the directory{near}: check {key} of "
                       f"[[ldap.sources]] {source.name}")
