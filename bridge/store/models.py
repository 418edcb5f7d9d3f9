"""SQLAlchemy 2 models for the whole dirbridge domain.

The same models run on SQLite (the embedded default) and PostgreSQL (scale-out),
so they avoid dialect-specific types: JSON, timezone-aware timestamps stored as
UTC, string primary keys for identities (UUIDs as text, stable across backends).
Case-insensitive uniqueness of userName is enforced by a unique ``user_name_key``
column holding the case-folded name, which works identically on both.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from uuid_utils import uuid7

from bridge.clock import utcnow

#: the largest integer SQLite and PostgreSQL's bigint store: no row id is larger, and a
#: larger one given as an id (a URL, a CLI argument) is refused, not passed to a driver that cannot bind it
LARGEST_ROW_ID = 2**63 - 1

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_id() -> str:
    """A new row's id: a UUIDv7 (RFC 9562), 48 bits of milliseconds then 74 random bits,
    increasing within the process. Ids made in order sort in order, so a batch of new
    users, groups or memberships is appended to the end of each index that holds ids (the
    primary keys, ``(source, id)``, the audit events' targets) instead of landing on random
    pages: a full LDAP sync of 100,000 users into an empty SQLite store went from 13.1 s to
    10.4 s (bench/ldap_sync_bench.py). An id is no secret (tokens and links have their own
    hashes), and the time it shows is the row's ``created_at``."""
    return str(uuid7())


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps are always aware UTC in Python, whatever the backend returns."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


class UserKind(enum.StrEnum):
    internal = "internal"
    external = "external"


class AccessType(enum.StrEnum):
    admin = "admin"
    backend = "backend"
    api = "api"


class GroupKind(enum.StrEnum):
    directory = "directory"  # from SCIM or LDAP
    portal = "portal"  # RemoteUsers, RemoteAdministrators and other portal groups
    customer_rights = "customer_rights"  # one per customer with remote access
    local = "local"  # created through the admin API


class RunMode(enum.StrEnum):
    """How an LDAP sync read its source."""

    full = "full"
    incremental = "incremental"


class RunStatus(enum.StrEnum):
    """Where an LDAP sync run stands; ``guarded``: stopped by the deletion guard, its plan
    kept; ``approved``: a guarded plan applied on purpose."""

    running = "running"
    ok = "ok"
    failed = "failed"
    guarded = "guarded"
    approved = "approved"
    #: still at work when the process had to stop (bridge.jobs.runner): batches committed
    #: before stay, nothing after; the next run starts from the last complete run's mark
    interrupted = "interrupted"


class JobOutcome(enum.StrEnum):
    running = "running"
    ok = "ok"
    failed = "failed"
    #: still at work when the process had to stop (bridge.jobs.runner)
    interrupted = "interrupted"


class TokenKind(enum.StrEnum):
    scim = "scim"
    admin = "admin"


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(cls, name=name, native_enum=False, validate_strings=True, length=32)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("source", "source_id", name="uq_users_source_source_id"),
        Index("ix_users_customer", "customer_id"),
        Index("ix_users_access_active", "access_type", "active"),
        Index("ix_users_access_type_rule", "access_type_rule"),  # what the access-type rules set
        Index("ix_users_external_id", "external_id"),  # SCIM clients look users up by externalId
        # A SCIM client's users in id order (its pages of /Users): read from the index, not sorted
        Index("ix_users_source_id", "source", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_name: Mapped[str] = mapped_column(String(256))
    user_name_key: Mapped[str] = mapped_column(String(256), unique=True)  # casefolded user_name
    display_name: Mapped[str | None] = mapped_column(String(256))
    given_name: Mapped[str | None] = mapped_column(String(128))
    family_name: Mapped[str | None] = mapped_column(String(128))
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    # an IdP's value is kept as sent (SCIM's preferredLanguage is any string); a local user's is BCP 47
    preferred_language: Mapped[str | None] = mapped_column(String(128))
    timezone: Mapped[str | None] = mapped_column(String(128))  # as preferred_language
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    kind: Mapped[UserKind] = mapped_column(_enum(UserKind, "user_kind"), default=UserKind.internal)
    access_type: Mapped[AccessType] = mapped_column(_enum(AccessType, "access_type"), default=AccessType.backend)
    # Set by a mapping rule with access_type (bridge.services.access): the rule's number, the
    # user's own value before it (restored when no rule applies any more), and why the rules'
    # answer is not what the user has (a source that may not hold admins, the last admin).
    access_type_rule: Mapped[int | None] = mapped_column(Integer)
    access_type_own: Mapped[AccessType | None] = mapped_column(_enum(AccessType, "access_type"))
    access_type_note: Mapped[str | None] = mapped_column(Text)
    # Where the user came from: "local", "scim:CLIENT", "ldap:SOURCE".
    source: Mapped[str] = mapped_column(String(80), default="local")
    # The source's stable id (entryUUID, objectGUID, SCIM id of the IdP...).
    source_id: Mapped[str | None] = mapped_column(String(256))
    external_id: Mapped[str | None] = mapped_column(String(256))  # SCIM externalId
    ldap_dn: Mapped[str | None] = mapped_column(Text)
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))
    customer_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    ip_allowlist: Mapped[list[Any]] = mapped_column(default=list)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)  # further SCIM attributes
    password_hash: Mapped[str | None] = mapped_column(String(1024))  # argon2id, or an imported hash
    password_changed_at: Mapped[datetime | None]
    password_warned_at: Mapped[datetime | None]  # the expiry warning of the current password went out
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    locked_until: Mapped[datetime | None]
    lock_reason: Mapped[str | None] = mapped_column(String(64))
    last_login_at: Mapped[datetime | None]
    # Operator sessions issued before this are refused (logout, password change or reset, lock, deactivation).
    sessions_valid_after: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    deactivated_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(Integer, default=1)

    customer: Mapped[Customer | None] = relationship(back_populates="users", foreign_keys=[customer_id])
    memberships: Mapped[list[GroupUserMember]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )

    __mapper_args__ = {"version_id_col": version}


class Group(Base):
    __tablename__ = "groups"
    __table_args__ = (
        UniqueConstraint("source", "source_id", name="uq_groups_source_source_id"),
        Index("ix_groups_display_name_key", "display_name_key"),
        Index("ix_groups_customer", "customer_id"),
        Index("ix_groups_external_id", "external_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    display_name: Mapped[str] = mapped_column(String(256))
    display_name_key: Mapped[str] = mapped_column(String(256))  # casefolded, for lookups
    kind: Mapped[GroupKind] = mapped_column(_enum(GroupKind, "group_kind"), default=GroupKind.directory)
    source: Mapped[str] = mapped_column(String(80), default="local")
    source_id: Mapped[str | None] = mapped_column(String(256))
    external_id: Mapped[str | None] = mapped_column(String(256))
    ldap_dn: Mapped[str | None] = mapped_column(Text)
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)

    user_members: Mapped[list[GroupUserMember]] = relationship(
        back_populates="group", cascade="all, delete-orphan", passive_deletes=True
    )
    group_members: Mapped[list[GroupGroupMember]] = relationship(
        foreign_keys="GroupGroupMember.group_id", cascade="all, delete-orphan", passive_deletes=True
    )

    __mapper_args__ = {"version_id_col": version}


class GroupUserMember(Base):
    """A user in a group. ``origin`` says which rule put them there, so that removing
    an assignment removes exactly the memberships it added and no others."""

    __tablename__ = "group_user_members"
    __table_args__ = (Index("ix_group_user_members_user", "user_id"),)

    group_id: Mapped[str] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    origin: Mapped[str] = mapped_column(String(120), primary_key=True, default="source")
    display: Mapped[str | None] = mapped_column(String(256))  # what the source calls the member (SCIM)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    group: Mapped[Group] = relationship(back_populates="user_members")
    user: Mapped[User] = relationship(back_populates="memberships")


class GroupGroupMember(Base):
    """A nested group: ``child_group_id`` is a member of ``group_id``."""

    __tablename__ = "group_group_members"
    __table_args__ = (
        CheckConstraint("group_id <> child_group_id", name="not_self"),
        Index("ix_group_group_members_child", "child_group_id"),
    )

    group_id: Mapped[str] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)
    child_group_id: Mapped[str] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)
    display: Mapped[str | None] = mapped_column(String(256))  # what the source calls the member (SCIM)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Right(Base):
    __tablename__ = "rights"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")


class Role(Base):
    __tablename__ = "roles"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    origin: Mapped[str] = mapped_column(String(32), default="api")  # "config" or "api"
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class RoleRight(Base):
    __tablename__ = "role_rights"

    role_id: Mapped[str] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True)
    right_name: Mapped[str] = mapped_column(ForeignKey("rights.name", ondelete="CASCADE"), primary_key=True)


class RoleInclude(Base):
    __tablename__ = "role_includes"
    __table_args__ = (CheckConstraint("role_id <> included_role_id", name="not_self"),)

    role_id: Mapped[str] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True)
    included_role_id: Mapped[str] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True)


class ScopeNode(Base):
    """A node of the scope tree, addressed as ``TYPE:NAME``; the root is ``instance``."""

    __tablename__ = "scope_nodes"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    level: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("scope_nodes.id", ondelete="RESTRICT"), index=True)
    origin: Mapped[str] = mapped_column(String(32), default="api")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Grant(Base):
    """A role at a scope node, for a user or for a group (exactly one of them)."""

    __tablename__ = "grants"
    __table_args__ = (
        CheckConstraint(
            "(user_id IS NULL) <> (group_id IS NULL)", name="user_xor_group"
        ),
        # NULLs are distinct in a plain unique constraint, so each holder kind gets a partial index.
        Index("uq_grants_user_grant", "role_id", "scope_id", "user_id", "origin", unique=True,
              sqlite_where=text("user_id IS NOT NULL"), postgresql_where=text("user_id IS NOT NULL")),
        Index("uq_grants_group_grant", "role_id", "scope_id", "group_id", "origin", unique=True,
              sqlite_where=text("group_id IS NOT NULL"), postgresql_where=text("group_id IS NOT NULL")),
        Index("ix_grants_user", "user_id"),
        Index("ix_grants_group", "group_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    role_id: Mapped[str] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"))
    scope_id: Mapped[str] = mapped_column(ForeignKey("scope_nodes.id", ondelete="CASCADE"))
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    group_id: Mapped[str | None] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"))
    origin: Mapped[str] = mapped_column(String(120), default="api")  # "api", "config", "import"...
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UserRight(Base):
    """A right given to one user individually at a scope node, on top of their roles."""

    __tablename__ = "user_rights"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    right_name: Mapped[str] = mapped_column(ForeignKey("rights.name", ondelete="CASCADE"), primary_key=True)
    scope_id: Mapped[str] = mapped_column(ForeignKey("scope_nodes.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Customer(Base):
    """A customer; ``id`` is a surrogate so that a re-used number is a new customer."""

    __tablename__ = "customers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    number: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(256))
    short_name: Mapped[str | None] = mapped_column(String(64))
    remote_access: Mapped[bool] = mapped_column(Boolean, default=False)
    quota_mb: Mapped[int | None] = mapped_column(Integer)
    agency: Mapped[bool] = mapped_column(Boolean, default=False)
    default_agency_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    users: Mapped[list[User]] = relationship(back_populates="customer", foreign_keys="User.customer_id")


class CustomerAgency(Base):
    __tablename__ = "customer_agencies"

    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    agency_id: Mapped[str] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)


class SalesAssignment(Base):
    """An internal sales representative assigned to a customer."""

    __tablename__ = "sales_assignments"

    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Invitation(Base):
    __tablename__ = "invitations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    created_by: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    expired_at: Mapped[datetime | None]  # set by the cleanup job when it closes an unused link
    sent_at: Mapped[datetime | None]


class AccountLink(Base):
    """A single-use link a user asked for: a forgotten password's reset, or the
    confirmation of a new e-mail address (sent to that address). Only the token's SHA-256
    is stored; a new link of the same purpose makes the user's earlier ones stop working."""

    __tablename__ = "account_links"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(32))  # "password_reset" | "email_change"
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    new_email: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class PasswordHistory(Base):
    __tablename__ = "password_history"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    password_hash: Mapped[str] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TotpCredential(Base):
    """A user's TOTP secret. It has to be readable to verify codes, so it cannot be hashed:
    it is sealed instead (bridge.accounts.vault); ``last_counter`` refuses the replay of a
    code already used."""

    __tablename__ = "totp_credentials"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    secret: Mapped[str] = mapped_column(String(512))  # sealed (bridge.accounts.vault)
    confirmed_at: Mapped[datetime | None]
    last_counter: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RecoveryCode(Base):
    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(255))
    used_at: Mapped[datetime | None]


class LoginAttempt(Base):
    """One login attempt, for the per-account and per-IP lockout windows."""

    __tablename__ = "login_attempts"
    __table_args__ = (
        Index("ix_login_attempts_user_at", "user_name_key", "at"),
        Index("ix_login_attempts_ip_at", "client_ip", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    user_name_key: Mapped[str] = mapped_column(String(256))
    client_ip: Mapped[str | None] = mapped_column(String(64))
    success: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(String(64))


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_at", "at"),
        Index("ix_audit_events_target", "target_type", "target_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(256))  # who: a token name, a user, "system"
    source: Mapped[str] = mapped_column(String(80))  # which source: "scim:entra", "ldap:corp", "local"
    channel: Mapped[str] = mapped_column(String(32))  # the way in: "scim", "admin-api", "cli", "job:NAME"...
    action: Mapped[str] = mapped_column(String(64))  # "user.create", "user.update", ...
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(256))
    target_name: Mapped[str | None] = mapped_column(String(256))
    changes: Mapped[dict[str, Any]] = mapped_column(default=dict)  # field -> [before, after]
    request_id: Mapped[str | None] = mapped_column(String(64))


class SyncRun(Base):
    __tablename__ = "sync_runs"
    __table_args__ = (Index("ix_sync_runs_source_started", "source", "started_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(80))
    mode: Mapped[str] = mapped_column(String(16))  # RunMode
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.running)  # RunStatus
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    added: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    deactivated: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    high_water_mark: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)  # guard plan, error messages


class ApiToken(Base):
    """A bearer token of a SCIM client or an admin API client. Only its SHA-256 is kept:
    tokens are 256-bit random values, so a slow hash adds nothing but latency."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[TokenKind] = mapped_column(_enum(TokenKind, "token_kind"))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)  # public part, shown in lists
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class JobRun(Base):
    __tablename__ = "job_runs"
    __table_args__ = (Index("ix_job_runs_job_started", "job", "started_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    job: Mapped[str] = mapped_column(String(80))
    replica: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    outcome: Mapped[str] = mapped_column(String(16), default=JobOutcome.running)  # JobOutcome
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    message: Mapped[str | None] = mapped_column(Text)


class LeaderLease(Base):
    """The scheduler lease: the replica named in ``holder`` runs the jobs until ``expires_at``."""

    __tablename__ = "leader_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    acquired_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class AuthzState(Base):
    """One row: the authorization generation. Every write that can change an answer of
    ``check`` bumps it in its own transaction, so each replica knows when to look again."""

    __tablename__ = "authz_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)
    # Change rows below this generation were pruned: a cache older than it starts afresh.
    pruned_below: Mapped[int] = mapped_column(BigInteger, default=0)


class AuthzChange(Base):
    """What one generation changed (``user``/``group`` and its id, or ``all``), so that a
    cache drops exactly the entries it has to."""

    __tablename__ = "authz_changes"

    generation: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    subject_type: Mapped[str] = mapped_column(String(8), primary_key=True)
    subject_id: Mapped[str] = mapped_column(String(36), primary_key=True)


class ScimClientMinute(Base):
    """SCIM requests and errors of one client in one minute (``minute`` = Unix time // 60).
    Every replica adds its own counts with an additive upsert, so the status page's
    "last hour" is the sum over all replicas. An empty ``client`` counts requests
    without a valid token."""

    __tablename__ = "scim_client_minutes"
    __table_args__ = (Index("ix_scim_client_minutes_minute", "minute"),)

    client: Mapped[str] = mapped_column(String(64), primary_key=True)
    minute: Mapped[int] = mapped_column(Integer, primary_key=True)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    last_at: Mapped[datetime | None]


class WritebackEntry(Base):
    """A directory entry write-back created, by the directory's stable id (entryUUID,
    nsUniqueId, objectGUID, ipaUniqueID). Write-back modifies, renames and deletes only
    entries it has a row for, so it never touches one another source or an
    administrator made. Kept after its user or group is gone, until the entry is deleted."""

    __tablename__ = "writeback_entries"
    __table_args__ = (UniqueConstraint("ldap_source", "entry_id", name="uq_writeback_entries_entry"),)

    ldap_source: Mapped[str] = mapped_column(String(80), primary_key=True)  # the [[ldap.sources]] name
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # "user" or "group"
    resource_id: Mapped[str] = mapped_column(String(36), primary_key=True)  # the user's or group's id
    entry_id: Mapped[str] = mapped_column(String(64))
    dn: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SourceConflict(Base):
    """A write one source could not make because of what another holds: a userName
    another source owns (``user_name``), a directory entry write-back did not create
    (``writeback``). Open until the same write succeeds; shown on the status page and
    counted in ``dirbridge_conflicts_open``. ``holder`` names the other side (a source,
    or a directory entry's DN)."""

    __tablename__ = "source_conflicts"
    __table_args__ = (UniqueConstraint("kind", "source", "subject_key", name="uq_source_conflicts_subject"),
                      Index("ix_source_conflicts_open", "resolved_at"))

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(80))
    subject: Mapped[str] = mapped_column(String(256))
    subject_key: Mapped[str] = mapped_column(String(256))
    holder: Mapped[str] = mapped_column(Text)
    detail: Mapped[str] = mapped_column(Text)
    count: Mapped[int] = mapped_column(Integer, default=1)
    first_seen: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]
