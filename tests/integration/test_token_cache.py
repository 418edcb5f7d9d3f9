"""The per-process token cache (bridge.services.token_cache) on SQLite and PostgreSQL: a
request with a token seen before is not a lookup of it, and still a token revoked or
rotated through one replica is refused by the very next request on another (two runtimes
on one store are two replicas). Attacked: the other kind's token, a revoke racing the
lookup that would cache it, last_used_at written on every request."""

from __future__ import annotations

import threading

from bridge.runtime import build_runtime
from bridge.services import Actor
from bridge.store.models import ApiToken, TokenKind
from bridge.web import create_app
from tests.fixtures.accounts import FakeClock


def replicas(runtime, tmp_path):
    other = build_runtime(runtime.config.model_copy(update={"data_dir": tmp_path / "b"}), store=runtime.store)
    return create_app(runtime).test_client(), create_app(other).test_client(), other


def make_token(runtime, name, kind="admin") -> str:
    with runtime.services.unit(Actor(name="ops")) as uow:
        return uow.tokens.create(name, kind)[1]


def users(client, token):
    return client.get("/api/v1/users", headers={"Authorization": f"Bearer {token}"}).status_code


def test_a_seen_token_is_not_looked_up_again(runtime, tmp_path):
    a, _, _ = replicas(runtime, tmp_path)
    token = make_token(runtime, "portal")
    assert users(a, token) == 200
    before = runtime.tokens.lookups
    for _ in range(20):
        assert users(a, token) == 200
    assert runtime.tokens.lookups == before
    for _ in range(3):  # a wrong token is looked up, and refused, every time
        assert users(a, token[:-1] + ("A" if token[-1] != "A" else "B")) == 401
    assert runtime.tokens.lookups == before + 3


def test_a_revoke_on_one_replica_holds_on_the_next_request_of_another(runtime, tmp_path):
    a, b, other = replicas(runtime, tmp_path)
    token = make_token(runtime, "portal")
    assert users(a, token) == 200 and users(b, token) == 200  # both have it cached now
    with other.services.unit(Actor(name="ops")) as uow:  # revoked through replica b
        uow.tokens.revoke("portal")
    assert users(a, token) == 401 and users(b, token) == 401


def test_a_rotated_secret_is_refused_at_once_and_the_new_one_works(runtime, tmp_path):
    a, b, other = replicas(runtime, tmp_path)
    old = make_token(runtime, "portal")
    assert users(a, old) == 200
    with other.services.unit(Actor(name="ops")) as uow:
        new = uow.tokens.rotate("portal")[1]
    assert users(a, old) == 401 and users(a, new) == 200 and users(b, new) == 200


def test_a_token_of_the_other_kind_stays_refused_when_cached(runtime, tmp_path, client):
    scim = make_token(runtime, "entra", "scim")
    assert client.get("/scim/v2/Users", headers={"Authorization": f"Bearer {scim}"}).status_code == 200
    assert users(client, scim) == 401  # the SCIM client's token on the admin API
    assert runtime.tokens.authenticate(scim, TokenKind.admin) is None


def test_a_revoke_racing_the_first_lookup_is_not_forgotten(runtime, tmp_path):
    """The lookup reads the token before the revoke commits and wants to keep it after: it
    must not, or the revoked token would be served from memory."""
    token = make_token(runtime, "portal")
    cache = runtime.tokens
    from bridge.services import token_cache

    real = token_cache.authenticate
    revoked = threading.Event()

    def slow(*args, **kwargs):
        identity = real(*args, **kwargs)  # valid when read...
        with runtime.services.unit(Actor(name="ops")) as uow:  # ...revoked before it is kept,
            uow.tokens.revoke("portal")
        cache._sync()  # and a concurrent request has seen the revoke already
        revoked.set()
        return identity

    token_cache.authenticate = slow
    try:
        assert cache.authenticate(token, TokenKind.admin) is not None  # this one request saw it valid
    finally:
        token_cache.authenticate = real
    assert revoked.is_set()
    assert cache.authenticate(token, TokenKind.admin) is None


def test_last_use_is_written_once_a_minute(runtime, tmp_path):
    runtime.clock = clock = FakeClock()
    a, _, _ = replicas(runtime, tmp_path)
    token = make_token(runtime, "portal")
    assert users(a, token) == 200
    with runtime.store.read() as session:
        first = session.query(ApiToken).filter_by(name="portal").one().last_used_at
    clock.advance(seconds=30)
    users(a, token)
    with runtime.store.read() as session:
        assert session.query(ApiToken).filter_by(name="portal").one().last_used_at == first
    clock.advance(seconds=31)
    users(a, token)
    with runtime.store.read() as session:
        assert session.query(ApiToken).filter_by(name="portal").one().last_used_at == clock.now
