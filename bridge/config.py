"""The dirbridge configuration: TOML, validated strictly, secrets kept out of the file.

Every table is a pydantic model with ``extra="forbid"`` so that a typo is an
error instead of a silently ignored setting; its numbers and switches are
StrictInt and StrictBool, so ``workers = "8"`` or ``port = true`` is an error too
(pydantic's lax mode read them as 8 and 1). Errors are reported as
``dotted.key: what is wrong`` lines so an operator can find the key at once.

A secret setting ``X`` may be given as ``X`` (inline), ``X_file`` (a path),
``X_env`` (the name of an environment variable) or ``X_credential`` (the name
of a systemd credential, read from ``$CREDENTIALS_DIRECTORY``). Exactly one of
them may be set.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

DEFAULT_DATA_DIR = Path("dirbridge-data")
DEFAULT_LISTEN = "127.0.0.1:8080"
SECRET_SOURCES = ("", "_file", "_env", "_credential")
INTERVAL_RE = re.compile(r"^(?P<n>[1-9][0-9]*)(?P<unit>[smhd])$")


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` lists ``key: message`` lines."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def _read_secret(owner: dict[str, Any], name: str, where: str) -> None:
    """Resolve ``name`` from one of its four sources, in place, before validation."""
    given = [s for s in SECRET_SOURCES if owner.get(name + s) not in (None, "")]
    if len(given) > 1:
        keys = ", ".join(name + s for s in given)
        raise ValueError(f"{where}{name}: set only one of {keys}")
    if not given:
        return
    suffix = given[0]
    ref = owner.pop(name + suffix)
    if suffix == "":
        owner[name] = ref
        return
    if not isinstance(ref, str):
        raise ValueError(f"{where}{name}{suffix}: must be a string")
    if suffix == "_file":
        path = Path(ref)
    elif suffix == "_credential":
        creds = os.environ.get("CREDENTIALS_DIRECTORY")
        if not creds:
            raise ValueError(
                f"{where}{name}_credential: $CREDENTIALS_DIRECTORY is not set "
                "(systemd LoadCredential= provides it)"
            )
        path = Path(creds) / ref
    else:
        value = os.environ.get(ref)
        if value is None:
            raise ValueError(f"{where}{name}_env: environment variable {ref} is not set")
        owner[name] = value
        return
    try:
        owner[name] = path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ValueError(f"{where}{name}{suffix}: cannot read {path}: {exc.strerror}") from None
    if not owner[name]:  # e.g. a credential file systemd-tmpfiles created empty and nobody filled
        raise ValueError(f"{where}{name}{suffix}: {path} is empty")


def parse_interval(text: str) -> int:
    """Seconds of an interval such as ``"15m"``; raises ValueError otherwise."""
    match = INTERVAL_RE.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not an interval like '30s', '15m', '6h' or '1d'")
    factor = {"s": 1, "m": 60, "h": 3600, "d": 86400}[match["unit"]]
    return int(match["n"]) * factor


def validate_schedule(text: str) -> str:
    """A schedule is an interval (``"15m"``) or a 5-field cron expression."""
    if INTERVAL_RE.match(text.strip()):
        return text.strip()
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is neither an interval like '15m' nor a cron expression: {exc}") from None
    return text


Schedule = Annotated[str, Field(min_length=1)]


class ServerConfig(Strict):
    listen: str = DEFAULT_LISTEN
    workers: StrictInt = Field(default=8, ge=1, le=256, description="request threads of each pool: SCIM's, the check "
                         "API's and the rest's (bridge.web.server)")
    hot_path_threads: Annotated[int, Field(ge=0, le=256, strict=True)] | Literal["auto"] = Field(
        default="auto", description="requests SCIM serves at once, and as many the check API (bridge.gate); "
        '"auto": 1 on SQLite, 2 on PostgreSQL (where each statement waits for the database); 0: no gate. '
        "docs/operators.md says what a gate gains and costs")
    public_url: str | None = None
    shutdown_timeout: float = Field(default=30.0, gt=0, le=600)
    max_connections: StrictInt = Field(default=1000, ge=10, le=100000, description="open connections served at once; "
                                 "more wait to be accepted")
    idle_timeout: float = Field(default=30.0, ge=1, le=3600, description="seconds a connection with no request "
                                "under way stays open")
    request_timeout: float = Field(default=30.0, ge=1, le=3600, description="seconds a request (headers and "
                                   "body) may take to arrive; a slower client is disconnected")
    trusted_proxies: StrictInt = Field(default=0, ge=0, le=5, description="X-Forwarded-* hops to trust")

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{value!r} is not HOST:PORT (for example 127.0.0.1:8080)")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class DatabaseConfig(Strict):
    url: SecretStr | None = None
    auto_migrate: StrictBool | None = Field(
        default=None,
        description="apply pending migrations on serve; default: on for SQLite, off otherwise",
    )
    pool_size: StrictInt = Field(default=10, ge=1, le=200)

    def resolved_url(self, data_dir: Path) -> str:
        if self.url is not None:
            return self.url.get_secret_value()
        return f"sqlite:///{(data_dir / 'dirbridge.sqlite3').resolve()}"

    def should_auto_migrate(self, data_dir: Path) -> bool:
        if self.auto_migrate is not None:
            return self.auto_migrate
        return self.resolved_url(data_dir).startswith("sqlite")


class ScimClientConfig(Strict):
    """What one SCIM client (a token name) may do beyond provisioning its own users and groups."""

    admins: StrictBool = Field(default=False, description="may create admins or make its users admins "
                         "(accessType admin); else 403")
    passwords: StrictBool = Field(default=False, description="may set the passwords of the users it owns (the "
                            "password policy applies); else a password it sends is left out")
    customers: list[str] = Field(default_factory=list, description="the customer numbers it may link its users "
                                 "to (customerNumber), [\"*\"] for any; another number is 403")

    @field_validator("customers")
    @classmethod
    def _numbers(cls, value: list[str]) -> list[str]:
        numbers = [number.strip() for number in value]
        if any(not number for number in numbers):
            raise ValueError("a customer number is empty")
        return numbers

    def may_name_customer(self, number: str) -> bool:
        return "*" in self.customers or number in self.customers


class ScimConfig(Strict):
    enabled: StrictBool = True
    clients: dict[str, ScimClientConfig] = Field(default_factory=dict, description="per SCIM client, by its "
                                                 "token name: [scim.clients.entra]")
    strict: StrictBool = Field(default=False, description="refuse unknown attributes and schema URIs, unquoted filter "
                         "values and empty PATCHes with 400 instead of reading them leniently")
    max_results: StrictInt = Field(default=1000, ge=1, le=100000)
    bulk_max_operations: StrictInt = Field(default=1000, ge=1, le=100000)
    bulk_max_payload_bytes: StrictInt = Field(default=1048576, ge=1024, le=2**30)
    max_request_bytes: StrictInt = Field(default=262144, ge=1024, le=2**30,
                                         description="largest body of a non-Bulk request")
    max_filter_length: StrictInt = Field(default=8192, ge=64, le=1048576, description="longest filter, in characters "
                                   "(else 400 invalidFilter)")
    max_filter_terms: StrictInt = Field(default=100, ge=1, le=500, description="most comparisons in one filter "
                                  "(else 400 invalidFilter)")
    cursor_secret: SecretStr | None = Field(
        default=None, description="seals the RFC 9865 paging cursors; the same on every replica "
        "(default: a random one kept in DATA_DIR/scim-cursor.secret)")
    cursor_timeout: StrictInt = Field(default=3600, ge=1, le=604800, description="seconds a paging cursor stays valid")
    fast_path: StrictBool = Field(default=True, description="answer the commonest /Users requests (lookups, lists, "
                            "GET, POST, PATCH, PUT) from store rows without scim2-server's per-resource model "
                            "round trips; false: scim2-server serves every request (for comparison)")

    def client(self, name: str) -> ScimClientConfig:
        """The settings of a client; one the config does not name may do nothing extra."""
        return self.clients.get(name) or ScimClientConfig()


class TlsConfig(Strict):
    mode: Literal["ldaps", "starttls", "none"] = "ldaps"
    ca_file: Path | None = None
    verify: StrictBool = Field(default=True, description="verify the server certificate")


class SyncSchedule(Strict):
    full: Schedule | None = "1d"
    incremental: Schedule | None = "15m"

    @field_validator("full", "incremental")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        return None if value is None else validate_schedule(value)


class DeletionGuard(Strict):
    max_percent: float = Field(default=10.0, ge=0, le=100)
    max_count: StrictInt = Field(default=50, ge=0, le=10_000_000)
    min_entries: StrictInt = Field(default=1, ge=0, le=10_000_000,
                                   description="a scan returning fewer entries stops the sync")


class WritebackConfig(Strict):
    enabled: StrictBool = False
    users_base: str | None = None
    groups_base: str | None = None

    @model_validator(mode="after")
    def _bases(self) -> WritebackConfig:
        if self.enabled and not (self.users_base and self.groups_base):
            raise ValueError("writeback needs users_base and groups_base when enabled")
        return self


class DirectoryPasswordsConfig(Strict):
    """Passwords of the source's users, changed through the directory (bridge.ldap.passwords)."""

    change: StrictBool = Field(default=True, description="users change their own password (bound as themselves, "
                         "with the old one): the directory checks the old password and applies its own policy")
    reset: StrictBool = Field(default=False, description="admins set a user's password without the old one, with the "
                        "bind account: off unless the bind account is meant to have write access to passwords")


class LdapSourceConfig(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    url: list[str]
    preset: Literal["openldap", "active_directory", "389ds", "freeipa"] = "openldap"
    bind_dn: str | None = None
    bind_password: SecretStr | None = None
    users_base: str
    users_filter: str | None = None
    groups_base: str | None = None
    groups_filter: str | None = None
    tls: TlsConfig = TlsConfig()
    schedule: SyncSchedule = SyncSchedule()
    deletion_guard: DeletionGuard = DeletionGuard()
    deletion: Literal["deactivate", "delete"] = "deactivate"
    writeback: WritebackConfig = WritebackConfig()
    page_size: StrictInt = Field(default=500, ge=1, le=10000)
    write_batch: StrictInt = Field(default=5000, ge=1, le=100000,
                             description="users written per transaction by a sync (at least a page)")
    connect_timeout: float = Field(default=5.0, gt=0, le=120)
    receive_timeout: StrictInt = Field(default=30, ge=1, le=3600, description="seconds; ldap3 needs a whole number")
    login_timeout: StrictInt = Field(default=3, ge=1, le=60, description="seconds a user's login bind may take "
                               "(connect and answer, per URL): a directory that does not answer fails fast")
    login_binds: StrictInt = Field(default=4, ge=1, le=256, description="user binds under way at once per process; "
                             "more are refused at once (503), so a slow directory holds few request threads")
    attributes: dict[str, str] = Field(default_factory=dict, description="overrides of the preset's attribute map")
    accesslog_base: str | None = Field(default=None, description="OpenLDAP accesslog suffix: incremental syncs "
                                       "then see deletions and moves out of scope")
    incremental_overlap: StrictInt = Field(default=60, ge=0, le=86400, description="seconds re-read before the "
                                     "high-water mark (writes in flight, replication delay)")
    dirsync: StrictBool = Field(default=False, description="Active Directory: incremental syncs read deletions "
                          "with the DirSync control (needs 'Replicating Directory Changes')")
    passwords: DirectoryPasswordsConfig = Field(
        default_factory=DirectoryPasswordsConfig, description="directory users' password changes and resets, "
        "made in the directory (its policy applies): see docs/ldap.md")
    admins: StrictBool = Field(default=False, description="its users may hold the admin access type, given by a "
                         "mapping rule with access_type = 'admin' (a directory never sets it itself)")
    reader: Literal["auto", "ldap3", "libldap"] = Field(
        default="auto", description="what reads a full scan: libldap (python-ldap, the ldapc extra; in C, "
        "several times faster), ldap3 (pure Python, always there), or auto: libldap when it imports")

    @field_validator("url", mode="before")
    @classmethod
    def _urls(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _url_schemes(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one URL is required")
        for url in value:
            if not re.match(r"^ldaps?://[^/]+/?$", url):
                raise ValueError(f"{url!r} is not an ldap:// or ldaps:// URL")
        return value

    @model_validator(mode="after")
    def _tls_matches_urls(self) -> LdapSourceConfig:
        schemes = {u.split(":", 1)[0] for u in self.url}
        if self.tls.mode == "ldaps" and schemes != {"ldaps"}:
            raise ValueError("tls.mode is 'ldaps' (the default) but a URL is not ldaps://; "
                             "use ldaps:// URLs, or tls.mode = 'starttls' or 'none'")
        if self.tls.mode in ("starttls", "none") and schemes != {"ldap"}:
            raise ValueError(f"tls.mode is {self.tls.mode!r}: use ldap:// URLs")
        if self.dirsync and self.preset != "active_directory":
            raise ValueError("dirsync is an Active Directory control: it needs preset = 'active_directory'")
        if self.bind_dn and self.bind_password is None:
            raise ValueError("bind_dn is set but no bind_password (or bind_password_file/_env/_credential)")
        if self.passwords.reset and not self.bind_dn:
            raise ValueError("passwords.reset sets passwords with the bind account: it needs bind_dn")
        return self


class LdapConfig(Strict):
    sources: list[LdapSourceConfig] = Field(default_factory=list)

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, value: list[LdapSourceConfig]) -> list[LdapSourceConfig]:
        seen: set[str] = set()
        for source in value:
            if source.name in seen:
                raise ValueError(f"two sources are named {source.name!r}")
            seen.add(source.name)
        return value


class MappingRule(Strict):
    source: str = "*"
    group: str | None = None
    group_regex: str | None = None
    #: every user (of ``source``; of ``of_kind`` when set) gets the role: "everyone is a basic user"
    all_users: StrictBool = False
    of_kind: Literal["internal", "external"] | None = None
    attribute: str | None = None
    value: str | None = None
    role: str | None = None
    scope: str = "instance"
    customer: str | None = None
    kind: Literal["internal", "external"] | None = None
    #: the access type of the users the rule matches (bridge.mapping.access: the most privileged wins)
    access_type: Literal["admin", "backend", "api"] | None = None

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        if not re.match(r"^(\*|scim(:[\w.-]+)?|ldap:[\w.-]+)$", value):
            raise ValueError(f"{value!r} is not '*', 'scim', 'scim:CLIENT' or 'ldap:SOURCE'")
        return value

    @field_validator("group_regex")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _one_matcher(self) -> MappingRule:
        matchers = [m for m in (self.group, self.group_regex, self.attribute) if m is not None]
        if self.all_users and self.access_type is not None:
            raise ValueError("access_type needs a group, group_regex or attribute rule, not all_users "
                             "(every user's access type is the source's or the operator's to set)")
        if self.all_users:
            matchers.append("all_users")
            if self.role is None or self.customer is not None or self.kind is not None:
                raise ValueError("an all_users rule gives a role (with a scope), and nothing else")
        if len(matchers) != 1:
            raise ValueError("a rule needs exactly one of group, group_regex, attribute or all_users = true")
        if self.of_kind is not None and not self.all_users:
            raise ValueError("of_kind narrows an all_users rule only")
        if self.attribute is not None and self.value is None:
            raise ValueError("a rule on an attribute needs a value")
        if self.access_type is not None:
            return self._access_type_only()
        if self.role is None and self.customer is None and self.kind is None:
            raise ValueError("a rule needs a role (with a scope), a customer, a kind or an access_type")
        if (self.attribute is None and not self.all_users
                and (self.role is None or self.customer is not None or self.kind is not None)):
            raise ValueError("a group rule gives a role (customer and kind come from attribute rules)")
        return self

    def _access_type_only(self) -> MappingRule:
        """An access-type rule says one thing: mixed with a role, customer or kind, removing
        the access type would mean editing a rule that also grants (and the other way round)."""
        given = [key for key in ("role", "customer", "kind") if getattr(self, key) is not None]
        if given:
            raise ValueError(f"a rule with access_type gives the access type only; move {', '.join(given)} "
                             "to a rule of its own")
        if self.scope != "instance":
            raise ValueError("a rule with access_type has no scope (an access type holds everywhere)")
        return self


class MappingConfig(Strict):
    rules: list[MappingRule] = Field(default_factory=list)
    cache_users: StrictInt = Field(default=200_000, ge=100, le=100_000_000,
                                   description="compiled users kept per process for check")


class RoleConfig(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    description: str = ""
    rights: list[str] = Field(default_factory=list)
    includes: list[str] = Field(default_factory=list)


SCOPE_ID_RE = r"^(instance|[a-z_]{1,32}:[^\s:]{1,128})$"


class ScopeNodeConfig(Strict):
    id: str = Field(pattern=SCOPE_ID_RE)
    parent: str = Field(default="instance", pattern=SCOPE_ID_RE)
    name: str | None = None


class ScopesConfig(Strict):
    levels: list[str] = Field(default_factory=lambda: ["instance", "company_group", "pool"])
    nodes: list[ScopeNodeConfig] = Field(default_factory=list)

    @field_validator("levels")
    @classmethod
    def _levels(cls, value: list[str]) -> list[str]:
        if len(value) < 1 or value[0] != "instance":
            raise ValueError("the first level must be 'instance'")
        if len(set(value)) != len(value):
            raise ValueError("level names must be distinct")
        return value

    @model_validator(mode="after")
    def _tree(self) -> ScopesConfig:
        known = {"instance"}
        for node in self.nodes:
            level = node.id.split(":", 1)[0]
            if level not in self.levels:
                raise ValueError(f"node {node.id!r}: level {level!r} is not one of {self.levels}")
            if node.parent not in known:
                raise ValueError(f"node {node.id!r}: parent {node.parent!r} is not declared before it")
            parent_level = node.parent.split(":", 1)[0]
            if self.levels.index(level) <= self.levels.index(parent_level):
                raise ValueError(f"node {node.id!r}: a {level} cannot hang under a {parent_level}")
            if node.id in known:
                raise ValueError(f"node {node.id!r} is declared twice")
            known.add(node.id)
        return self


class CustomersConfig(Strict):
    rights_group_name: str = "X{number}-{name}"
    remote_users_group: str = "RemoteUsers"
    remote_admins_group: str = "RemoteAdministrators"
    sales_group: str = Field(default="CustomerSalesRepresentatives",
                             description="only its members may be assigned as sales representatives; '' = anyone")

    @field_validator("rights_group_name")
    @classmethod
    def _pattern(cls, value: str) -> str:
        match = re.fullmatch(r"(?P<prefix>[^{}]*)\{(?:number|name)\}(-\{(?:number|name|short_name)\})?", value)
        if not match:
            raise ValueError(
                "must be a prefix, then {number} or {name}, then optionally "
                "'-' and {number}, {name} or {short_name} (for example 'X{number}-{name}')"
            )
        return value


class PasswordPolicy(Strict):
    min_length: StrictInt = Field(default=12, ge=8, le=256)
    require_upper: StrictBool = True
    require_lower: StrictBool = True
    require_digit: StrictBool = True
    require_special: StrictBool = True
    min_criteria: StrictInt = Field(default=3, ge=1, le=4, description="how many enabled criteria must be met")
    history: StrictInt = Field(default=5, ge=0, le=20)
    max_age_days: StrictInt | None = Field(default=None, ge=1, le=3650)
    warn_days: StrictInt = Field(default=7, ge=0, le=365)
    # argon2id cost; a stored hash made with other values is rehashed at the next login.
    hash_time_cost: StrictInt = Field(default=3, ge=1, le=20)
    hash_memory_kib: StrictInt = Field(default=65536, ge=8192, le=4194304)
    hash_parallelism: StrictInt = Field(default=4, ge=1, le=64)

    @model_validator(mode="after")
    def _criteria(self) -> PasswordPolicy:
        enabled = sum([self.require_upper, self.require_lower, self.require_digit, self.require_special])
        if enabled < 3:
            raise ValueError("at least 3 of require_upper/lower/digit/special must be enabled")
        if self.min_criteria > enabled:
            raise ValueError(f"min_criteria is {self.min_criteria} but only {enabled} criteria are enabled")
        return self


class LockoutPolicy(Strict):
    max_failures_per_account: StrictInt = Field(default=5, ge=1, le=10**9)
    max_failures_per_ip: StrictInt = Field(default=25, ge=1, le=10**9)
    window_hours: StrictInt = Field(default=24, ge=1, le=8760)
    lock_hours: StrictInt = Field(default=24, ge=1, le=8760)


class TotpPolicy(Strict):
    required_for_admins: StrictBool = False
    issuer: str = "dirbridge"
    key: SecretStr | None = Field(default=None, description="seals the TOTP secrets at rest: one or more "
                                  "random secrets of 32+ characters, comma-separated (the first seals, each "
                                  "opens); absent: one is kept in DATA_DIR/totp.key")

    @field_validator("key")
    @classmethod
    def _keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        keys = [k.strip() for k in value.get_secret_value().split(",")]
        if not keys or any(len(k) < 32 or len(set(k)) < 10 for k in keys):
            raise ValueError("each key needs 32 random characters or more (openssl rand -hex 32)")
        return value


class PolicyConfig(Strict):
    password: PasswordPolicy = PasswordPolicy()
    lockout: LockoutPolicy = LockoutPolicy()
    totp: TotpPolicy = TotpPolicy()


class InvitesConfig(Strict):
    valid_days: StrictInt = Field(default=5, ge=1, le=90)
    retention_days: StrictInt = Field(default=30, ge=1, le=3650, description="purge expired or used invitations after")
    default_language: Literal["de", "en"] = "en"
    product_name: str = Field(default="dirbridge", min_length=1, max_length=80,
                              description="the name users read in mails and on the password page")


class SelfServiceConfig(Strict):
    """The users' own pages (/account) and the matching API: forgotten password, profile,
    e-mail change, own TOTP and password."""

    enabled: StrictBool = True
    reset_minutes: StrictInt = Field(default=30, ge=5, le=1440, description="how long a password-reset link works")
    email_change_hours: StrictInt = Field(default=24, ge=1, le=168, description="how long the link that confirms a "
                                    "new e-mail address works")
    requests_per_hour: StrictInt = Field(default=3, ge=1, le=100, description="reset mails per typed name or address "
                                   "and hour (known or not: the answer must not tell them apart)")
    requests_per_ip_per_hour: StrictInt = Field(default=20, ge=1, le=10000, description="reset requests per client "
                                          "address and hour")
    session_minutes: StrictInt = Field(default=15, ge=1, le=720,
                                       description="how long a login to the account pages lasts")
    reset_url: str | None = Field(default=None, description="the portal's own page for a reset link, with {token} "
                                  "where the token goes (it then calls /api/v1/account/password-reset/confirm); "
                                  "absent: dirbridge's /account/reset")
    email_url: str | None = Field(default=None, description="the same for the link that confirms a new address "
                                  "(/api/v1/account/email-change/confirm); absent: dirbridge's /account/email")

    @field_validator("reset_url", "email_url")
    @classmethod
    def _link_template(cls, value: str | None) -> str | None:
        if value is not None and (not re.match(r"^https?://[^/\s]+(/\S*)?$", value) or "{token}" not in value):
            raise ValueError("an http(s) URL with {token} where the link's token goes, like "
                             "https://portal.example.org/reset?token={token}")
        return value


class SmtpConfig(Strict):
    host: str = "localhost"
    port: StrictInt = Field(default=25, ge=1, le=65535)
    tls: Literal["starttls", "implicit", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    sender: str = "dirbridge@localhost"
    timeout: float = Field(default=10.0, gt=0, le=600)
    ca_file: Path | None = None

    def cleartext_login(self) -> bool:
        """Whether the login (username and password) would cross the network unencrypted."""
        return self.tls == "none" and bool(self.username)


MIN_SESSION_SECRET = 32


class StatusConfig(Strict):
    enabled: StrictBool = True
    refresh_seconds: StrictInt = Field(default=30, ge=5, le=3600)
    session_secret: SecretStr | None = Field(default=None, description="signs the operator and invitation "
                                             "session cookies: 32 random bytes or more; absent: one is made and "
                                             "kept in the data directory")

    @field_validator("session_secret")
    @classmethod
    def _strong(cls, value: SecretStr | None) -> SecretStr | None:
        """A short or plain secret ("changeme") is cracked offline from one cookie, and
        then any operator session can be forged: refuse it rather than sign with it."""
        if value is None:
            return None
        text = value.get_secret_value().strip()
        if len(text) < MIN_SESSION_SECRET or len(set(text)) < 10:
            raise ValueError(f"too weak: use {MIN_SESSION_SECRET} random bytes or more (openssl rand -hex 32), "
                             "or leave it out and dirbridge makes one in the data directory")
        return value
    session_minutes: StrictInt = Field(default=480, ge=5, le=10080,
                                 description="an operator's login lasts this long, however active")
    require_totp: StrictBool = Field(default=True, description="operators must have TOTP enrolled to log in")


SOURCE_NAME = re.compile(r"^(local|scim:[a-z0-9][a-z0-9_.-]{0,63}|ldap:[a-z0-9][a-z0-9_-]{0,63})$")


def _source_name(value: str) -> str:
    if not SOURCE_NAME.match(value):
        raise ValueError(f"{value!r} is no source: use \"local\", \"scim:TOKEN-NAME\" or \"ldap:SOURCE-NAME\"")
    return value


class OwnershipRule(Strict):
    """Lets ``source`` change users owned by any of ``may_take_over``."""

    source: str
    may_take_over: list[str]

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        return _source_name(value)

    @field_validator("may_take_over")
    @classmethod
    def _owners(cls, value: list[str]) -> list[str]:
        return [owner if owner == "*" else _source_name(owner) for owner in value]


class OwnershipConfig(Strict):
    rules: list[OwnershipRule] = Field(default_factory=list)


class AuditConfig(Strict):
    retention_days: StrictInt = Field(default=365, ge=1, le=36500)


class LoggingConfig(Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "json"


class JobsConfig(Strict):
    enabled: StrictBool = True
    lease_seconds: StrictInt = Field(default=30, ge=5, le=3600)
    schedules: dict[str, str] = Field(default_factory=dict, description="job name -> schedule, overriding its own")

    @field_validator("schedules")
    @classmethod
    def _schedules(cls, value: dict[str, str]) -> dict[str, str]:
        return {name: validate_schedule(schedule) for name, schedule in value.items()}


def admins_hint(source: str) -> str:
    """How the config lets users of ``source`` be admins, for a refusal's message."""
    if source.startswith("ldap:"):
        return f"the config allows it with [[ldap.sources]] admins = true for {source.removeprefix('ldap:')!r}"
    if source.startswith("scim:"):
        return f"the config allows it with [scim.clients.{source.removeprefix('scim:')}] admins = true"
    return "no setting of the config allows it"


class Config(Strict):
    """The whole configuration; ``data_dir`` is where the embedded default keeps its files."""

    data_dir: Path = DEFAULT_DATA_DIR
    server: ServerConfig = ServerConfig()
    database: DatabaseConfig = DatabaseConfig()
    scim: ScimConfig = ScimConfig()
    ldap: LdapConfig = LdapConfig()
    mapping: MappingConfig = MappingConfig()
    roles: list[RoleConfig] = Field(default_factory=list)
    scopes: ScopesConfig = ScopesConfig()
    customers: CustomersConfig = CustomersConfig()
    policy: PolicyConfig = PolicyConfig()
    invites: InvitesConfig = InvitesConfig()
    self_service: SelfServiceConfig = SelfServiceConfig()
    smtp: SmtpConfig = SmtpConfig()
    status: StatusConfig = StatusConfig()
    ownership: OwnershipConfig = OwnershipConfig()
    audit: AuditConfig = AuditConfig()
    logging: LoggingConfig = LoggingConfig()
    jobs: JobsConfig = JobsConfig()

    @field_validator("roles")
    @classmethod
    def _role_names(cls, value: list[RoleConfig]) -> list[RoleConfig]:
        names = [r.name for r in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"roles declared twice: {', '.join(dupes)}")
        known = set(names)
        for role in value:
            missing = [i for i in role.includes if i not in known]
            if missing:
                raise ValueError(f"role {role.name!r} includes unknown roles: {', '.join(missing)}")
        includes = {r.name: r.includes for r in value}
        done: set[str] = set()

        def visit(name: str, path: tuple[str, ...]) -> None:
            if name in path:
                cycle = " -> ".join(path[path.index(name):] + (name,))
                raise ValueError(f"roles include each other in a cycle: {cycle}")
            if name in done:
                return
            for included in includes[name]:
                visit(included, path + (name,))
            done.add(name)

        for role in value:
            visit(role.name, ())
        return value

    @model_validator(mode="after")
    def _ownership_ldap_sources(self) -> Config:
        """An ownership rule naming an LDAP source that is not configured is a typo."""
        known = {f"ldap:{source.name}" for source in self.ldap.sources}
        for i, rule in enumerate(self.ownership.rules):
            for name in (rule.source, *rule.may_take_over):
                if name.startswith("ldap:") and name not in known:
                    raise ValueError(f"ownership.rules[{i}]: {name!r} is no [[ldap.sources]] entry "
                                     f"(configured: {', '.join(sorted(known)) or 'none'})")
        return self

    @model_validator(mode="after")
    def _admin_rules_sources(self) -> Config:
        """A rule making admins of one named source that may not hold admins would never apply:
        say so at start instead (rules on ``*`` or ``scim`` are checked per user, bridge.mapping.access)."""
        for i, rule in enumerate(self.mapping.rules):
            named = rule.source not in ("*", "scim")
            if rule.access_type == "admin" and named and not self.may_hold_admins(rule.source):
                raise ValueError(f"mapping.rules[{i}]: access_type = 'admin' for {rule.source}, whose users may "
                                 f"not be admins; {admins_hint(rule.source)}")
        return self

    def may_hold_admins(self, source: str) -> bool:
        """Whether users of ``source`` may have the admin access type: the local operator's,
        a SCIM client's with ``admins = true``, an LDAP source's with ``admins = true``."""
        if source == "local":
            return True
        if source.startswith("scim:"):
            return self.scim.client(source.removeprefix("scim:")).admins
        if source.startswith("ldap:"):
            return any(f"ldap:{s.name}" == source and s.admins for s in self.ldap.sources)
        return False

    @property
    def database_url(self) -> str:
        return self.database.resolved_url(self.data_dir)

    @property
    def hot_path_slots(self) -> int:
        """``server.hot_path_threads``, "auto" by the store: 1 on SQLite, where a request
        only waits for the CPU, 2 on PostgreSQL, where each statement waits for the
        database (bench/scim_bench.py, docs/operators.md)."""
        if self.server.hot_path_threads != "auto":
            return self.server.hot_path_threads
        return 1 if self.database_url.startswith("sqlite") else 2

    def secret_values(self) -> list[str]:
        """Every secret in the config, for the log redactor."""
        found: list[str] = []

        def walk(node: Any) -> None:
            if isinstance(node, SecretStr):
                found.append(node.get_secret_value())
            elif isinstance(node, BaseModel):
                for name in type(node).model_fields:
                    walk(getattr(node, name))
            elif isinstance(node, (list, tuple)):
                for item in node:
                    walk(item)

        walk(self)
        return [s for s in found if len(s) >= 4]


# Where secrets may appear: (path pattern of tables, key). "*" matches list items.
SECRET_KEYS: list[tuple[tuple[str, ...], str]] = [
    (("database",), "url"),
    (("ldap", "sources", "*"), "bind_password"),
    (("smtp",), "password"),
    (("status",), "session_secret"),
    (("scim",), "cursor_secret"),
    (("policy", "totp"), "key"),
]


def _resolve_secrets(raw: dict[str, Any]) -> list[str]:
    problems: list[str] = []

    def visit(node: Any, path: tuple[str, ...], pattern: tuple[str, ...], key: str, shown: str) -> None:
        if not pattern:
            if isinstance(node, dict):
                try:
                    _read_secret(node, key, shown)
                except ValueError as exc:
                    problems.append(str(exc))
            return
        head, rest = pattern[0], pattern[1:]
        if head == "*":
            if isinstance(node, list):
                for index, item in enumerate(node):
                    visit(item, path, rest, key, f"{shown[:-1]}[{index}].")
            return
        if isinstance(node, dict) and head in node:
            visit(node[head], path + (head,), rest, key, f"{shown}{head}.")

    for pattern, key in SECRET_KEYS:
        visit(raw, (), pattern, key, "")
    return problems


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _format_errors(exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False):
        loc = tuple(p for p in error["loc"] if p not in ("function-after", "function-before"))
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        if not loc and re.match(r"^[a-z_]+[.\[]", message):  # a whole-config check that names its key itself
            problems.append(message)
            continue
        problems.append(f"{_format_loc(loc)}: {message}")
    return problems


def load_config_data(raw: dict[str, Any], base_dir: Path | None = None) -> Config:
    """Validate an already parsed TOML document; raises ConfigError."""
    problems = _resolve_secrets(raw) or _nul_keys(raw, "")
    if problems:
        raise ConfigError(problems)
    if base_dir is not None and isinstance(raw.get("data_dir"), str):  # other types: pydantic's error
        data_dir = Path(raw["data_dir"])
        raw = {**raw, "data_dir": data_dir if data_dir.is_absolute() else base_dir / data_dir}
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc)) from None


def _nul_keys(value: Any, key: str) -> list[str]:
    """``key: ...`` for every string of the document holding a NUL (TOML's ``\u0000``): no
    store keeps it in text, so a role's description or a rule's value with one could never
    be written."""
    if isinstance(value, str):
        return [f"{key or 'the document'}: contains a NUL character"] if "\x00" in value else []
    if isinstance(value, dict):
        return [problem for name, item in value.items()
                for problem in ([f"{key}.{name}: the key contains a NUL character"] if "\x00" in str(name) else
                                _nul_keys(item, f"{key}.{name}" if key else str(name)))]
    if isinstance(value, list):
        return [problem for index, item in enumerate(value) for problem in _nul_keys(item, f"{key}[{index}]")]
    return []


def load_config(path: Path | None) -> Config:
    """Load the config file, or the embedded default when ``path`` is None."""
    if path is None:
        return Config()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    return load_config_data(raw, base_dir=path.resolve().parent)
