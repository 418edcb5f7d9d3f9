"""Full scans read with python-ldap: OpenLDAP's libldap decodes the BER in C.

ldap3 decodes every entry in pure Python (about 7,000 entries a second); libldap
reads the same paged search several times faster, and the reading process of a
full sync (bridge.ldap.readahead) uses it when ``import ldap`` works (the
``ldapc`` extra) and the source's ``reader`` is ``auto`` or ``libldap``. ldap3
stays for everything else (incremental syncs, write-back, logins, DirSync) and
as the fallback: ``reader = "ldap3"`` turns this module off for a source.

What comes out is what the ldap3 path makes, entry for entry: the values are
turned into the dicts ldap3 hands out (text as UTF-8 ``str``, anything else left
``bytes``; ``raw_attributes`` as sent, for objectGUID) and parsed by the same
``EntryParser``, AD's ranged ``member`` values are followed through the same
walk. The connection behaves like bridge.ldap.connection's: the source's URLs
in order, ldaps or StartTLS with the certificate and its host name verified
against ``tls.ca_file`` (else the system's CA store) unless ``tls.verify`` is
false, the same timeouts, the same warnings. Its failures are raised as the
ldap3 exceptions the ldap3 path raises for them, so the sync explains them in
the same words (bridge.ldap.errors).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from ldap3.core import exceptions as lx
from ldap3.core.results import RESULT_CODES

from bridge.config import LdapSourceConfig
from bridge.ldap.connection import tls_settings, warn_insecure, why_unreached
from bridge.ldap.directory import EntryParser, GroupEntry, UserEntry
from bridge.ldap.dn import dn_key, is_under
from bridge.ldap.errors import DirectoryUnreachable, LdapProblem, Unreached, base_not_found
from bridge.ldap.presets import AttributeMap

try:
    import ldap
    from ldap.controls import SimplePagedResultsControl
except ImportError:  # the ldapc extra is not installed: ldap3 reads
    ldap = None

#: what ``reader = "auto"`` picks when python-ldap imports
LIBLDAP, LDAP3 = "libldap", "ldap3"


def available() -> bool:
    """Whether python-ldap (and so libldap) can be used in this process."""
    return ldap is not None


def version() -> str:
    """python-ldap's version and the libldap it was built with, for the log."""
    if ldap is None:
        return "not installed"
    vendor = ldap.VENDOR_VERSION  # 20513 is 2.5.13
    return f"python-ldap {ldap.__version__}, libldap {vendor // 10000}.{vendor // 100 % 100}.{vendor % 100}"


def chosen(source: LdapSourceConfig) -> str:
    """The reader a full scan of ``source`` uses: ``libldap`` or ``ldap3``. A source that
    asks for libldap where python-ldap is missing is a configuration problem, not a
    silent fallback (the operator asked for the speed)."""
    if source.reader == LDAP3:
        return LDAP3
    if available():
        return LIBLDAP
    if source.reader == LIBLDAP:
        raise LdapProblem(f"reader = 'libldap' of [[ldap.sources]] {source.name} needs python-ldap, which is not "
                          "installed: install dirbridge with the ldapc extra, or set reader = 'auto' or 'ldap3'")
    return LDAP3


# -- values as ldap3 hands them out ---------------------------------------------------------


def _values(raw: list[bytes]) -> list[Any]:
    """ldap3's default formatter (no schema): a UTF-8 value as ``str``, any other as ``bytes``."""
    try:
        return [value.decode() for value in raw]
    except UnicodeDecodeError:
        return [_value(value) for value in raw]


def _value(raw: bytes) -> Any:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw


def as_ldap3(dn: str, raw: Mapping[str, list[bytes]]) -> dict[str, Any]:
    """One search entry of python-ldap as ldap3's entry dict (``dn``, ``attributes``,
    ``raw_attributes``), with ldap3's case-sensitive plain dicts (as the reading process
    sets it up). An attribute without values is left out, as with ``empty_attributes``
    off."""
    return {"dn": dn, "attributes": {name: _values(values) for name, values in raw.items() if values},
            "raw_attributes": raw}


# -- errors as ldap3 raises them -------------------------------------------------------------


def _detail(exc: BaseException) -> dict[str, Any]:
    info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    return info


def _text(exc: BaseException) -> str:
    """What libldap said, in one line: its description, the server's or TLS library's
    message, and the system error when there is one."""
    info = _detail(exc)
    parts = [str(info.get("desc") or type(exc).__name__)]
    if info.get("info"):
        parts.append(str(info["info"]))
    if info.get("errno"):
        parts.append(os.strerror(int(info["errno"])))
    return ": ".join(parts)


def _unreached(url: str, exc: BaseException, source: LdapSourceConfig) -> Unreached:
    """Why ``url`` could not be used, in the ldap3 path's words. libldap says "Can't contact
    LDAP server" for a refused port, an unknown host, an untrusted certificate and a server
    that is not LDAP alike (GnuTLS, which Debian's libldap uses, gives no reason at all), so
    on this failure path, once per URL, ldap3 tries the URL and says why it cannot use it.
    Should ldap3 get through where libldap did not, libldap's own words are given."""
    reason = why_unreached(source, url)
    if reason is not None:
        return reason
    return Unreached(url, f"libldap cannot use it, though ldap3 can ({_text(exc)}): set reader = 'ldap3' "
                          f"of [[ldap.sources]] {source.name}")


def as_ldap3_error(exc: BaseException, source: LdapSourceConfig) -> lx.LDAPException:
    """python-ldap's exception as the ldap3 one the ldap3 path would have raised."""
    info = _detail(exc)
    code = info.get("result")
    if isinstance(exc, ldap.TIMEOUT):
        return lx.LDAPSocketReceiveError(f"error receiving data: timed out ({_text(exc)})")
    if isinstance(exc, ldap.SERVER_DOWN | ldap.CONNECT_ERROR):
        return lx.LDAPSessionTerminatedByServerError(f"session terminated by server ({_text(exc)})")
    if isinstance(code, int) and code > 0:
        return lx.LDAPOperationResult(result=code, description=RESULT_CODES.get(code, info.get("desc")),
                                      dn=info.get("matched") or None, message=info.get("info") or "",
                                      response_type="searchResDone")
    return lx.LDAPException(_text(exc))


# -- the connection --------------------------------------------------------------------------


def _default_ca_file() -> str | None:
    """The system CA store as Python's ssl finds it (ldap3's default when no tls.ca_file)."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


def _initialize(source: LdapSourceConfig, url: str) -> Any:
    conn = ldap.initialize(url)
    conn.set_option(ldap.OPT_PROTOCOL_VERSION, ldap.VERSION3)
    conn.set_option(ldap.OPT_REFERRALS, 0)  # references are skipped, as the ldap3 path skips them
    conn.set_option(ldap.OPT_NETWORK_TIMEOUT, float(source.connect_timeout))
    conn.set_option(ldap.OPT_TIMEOUT, float(source.receive_timeout))
    if source.tls.mode != "none":
        conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT,
                        ldap.OPT_X_TLS_DEMAND if source.tls.verify else ldap.OPT_X_TLS_NEVER)
        ca_file = str(source.tls.ca_file) if source.tls.ca_file else _default_ca_file()
        if ca_file:
            conn.set_option(ldap.OPT_X_TLS_CACERTFILE, ca_file)
        conn.set_option(ldap.OPT_X_TLS_PROTOCOL_MIN, ldap.OPT_X_TLS_PROTOCOL_TLS1_2)  # as PROTOCOL_TLS_CLIENT
        conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)  # last: the context takes the options above
    return conn


def connect(source: LdapSourceConfig) -> tuple[Any, str]:
    """A bound python-ldap connection to the first of the source's URLs that answers, and
    that URL's host; raises what bridge.ldap.connection.connect raises in each case."""
    warn_insecure(source)
    tls_settings(source)  # tls.ca_file unreadable or no PEM: the same LdapProblem
    password = source.bind_password.get_secret_value() if source.bind_password else ""
    tried: list[Unreached] = []
    for url in source.url:
        conn = _initialize(source, url)
        try:
            if source.tls.mode == "starttls":
                conn.start_tls_s()
            conn.simple_bind_s(source.bind_dn or "", password)
            return conn, urlsplit(url).hostname or ""
        except (ldap.SERVER_DOWN, ldap.CONNECT_ERROR, ldap.TIMEOUT) as exc:  # the next URL may answer
            tried.append(_unreached(url, exc, source))
        except ldap.LDAPError as exc:  # the directory answered (a refused bind): the next would say the same
            raise as_ldap3_error(exc, source) from None
    raise DirectoryUnreachable(source.name, tried)


class _RangeConnection:
    """What ``EntryParser`` asks of a connection to follow AD's ranged ``member`` values
    (``search`` of one entry, then ``response``), over python-ldap."""

    def __init__(self, conn: Any, source: LdapSourceConfig):
        self.conn = conn
        self.source = source
        self.response: list[dict[str, Any]] = []

    def search(self, base: str, search_filter: str, scope: Any, attributes: list[str]) -> bool:
        try:
            found = self.conn.search_ext_s(base, ldap.SCOPE_BASE, search_filter, attributes,
                                           timeout=self.source.receive_timeout)
        except ldap.LDAPError as exc:
            raise as_ldap3_error(exc, self.source) from None
        self.response = [as_ldap3(dn, attrs) for dn, attrs in found if dn is not None]
        return bool(self.response)


class CReader:
    """Paged searches over one python-ldap connection, skipping the write-back subtree,
    yielding what ``bridge.ldap.directory.Reader`` yields for a full scan."""

    def __init__(self, source: LdapSourceConfig, amap: AttributeMap):
        if ldap is None:
            raise ImportError("python-ldap is not installed (the ldapc extra)")
        self.source = source
        self.amap = amap
        self.conn, self.host = connect(source)
        self._parser = EntryParser(amap)
        self._ranges = _RangeConnection(self.conn, source)
        wb = source.writeback
        self._skip = [dn_key(b) for b in (wb.users_base, wb.groups_base) if wb.enabled and b]

    def close(self) -> None:
        try:
            self.conn.unbind_ext_s()
        except ldap.LDAPError:
            pass  # the directory went away: the error that said so is the one to report

    def _skipped(self, dn: str) -> bool:
        if not self._skip:
            return False
        key = dn_key(dn)
        return any(is_under(key, base) for base in self._skip)

    def _pages(self, key: str, base: str, search_filter: str,
               attributes: list[str]) -> Iterator[list[tuple[str, dict[str, list[bytes]]]]]:
        """The entries under ``base``, a page at a time (python-ldap's tuples)."""
        control = SimplePagedResultsControl(True, size=self.source.page_size, cookie=b"")
        timeout = self.source.receive_timeout
        while True:
            try:
                msgid = self.conn.search_ext(base, ldap.SCOPE_SUBTREE, search_filter, attributes,
                                             serverctrls=[control])
                _, page, _, controls = self.conn.result3(msgid, all=1, timeout=timeout)
            except ldap.NO_SUCH_OBJECT as exc:
                problem = as_ldap3_error(exc, self.source)
                assert isinstance(problem, lx.LDAPNoSuchObjectResult)
                raise base_not_found(self.source, key, base, problem) from None
            except ldap.LDAPError as exc:
                raise as_ldap3_error(exc, self.source) from None
            yield [(dn, attrs) for dn, attrs in page if dn is not None and not self._skipped(dn)]
            cookie = next((c.cookie for c in controls or []
                           if c.controlType == SimplePagedResultsControl.controlType), b"")
            if not cookie:
                return
            control.cookie = cookie

    def users(self, since: str | None = None) -> Iterator[UserEntry]:
        if since is not None:
            raise ValueError("the libldap reader does full scans only")
        parse = self._parser.user
        for page in self._pages("users_base", self.source.users_base, self.amap.users_filter,
                                self.amap.user_attributes()):
            for dn, attrs in page:
                user = parse(as_ldap3(dn, attrs))
                if user is not None:
                    yield user

    def groups(self, since: str | None = None) -> Iterator[GroupEntry]:
        if since is not None:
            raise ValueError("the libldap reader does full scans only")
        if not self.source.groups_base:
            return
        for page in self._pages("groups_base", self.source.groups_base, self.amap.groups_filter,
                                self.amap.group_attributes()):
            for dn, attrs in page:
                group = self._parser.group(self._ranges, as_ldap3(dn, attrs))
                if group is not None:
                    yield group
