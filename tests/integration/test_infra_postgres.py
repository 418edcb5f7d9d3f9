"""The PostgreSQL fixtures serve a real server with one fresh database per test."""

from __future__ import annotations

import sqlalchemy as sa


def test_create_table_and_round_trip(postgres_url):
    assert postgres_url.startswith("postgresql+psycopg://")
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE people (id serial PRIMARY KEY, name text NOT NULL UNIQUE)"))
            conn.execute(sa.text("INSERT INTO people (name) VALUES (:n)"), [{"n": "Jürgen Müller"}, {"n": "alice"}])
        with engine.connect() as conn:
            names = conn.execute(sa.text("SELECT name FROM people ORDER BY id")).scalars().all()
            version = conn.execute(sa.text("SHOW server_version_num")).scalar_one()
            encoding = conn.execute(sa.text("SHOW server_encoding")).scalar_one()
        assert names == ["Jürgen Müller", "alice"]
        assert version.startswith("15")
        assert encoding == "UTF8"
    finally:
        engine.dispose()


def test_databases_are_isolated(postgres_server, postgres_url):
    other_url = postgres_server.create_database("infra_isolation_other")
    first, second = sa.create_engine(postgres_url), sa.create_engine(other_url)
    try:
        with first.begin() as conn:
            conn.execute(sa.text("CREATE TABLE only_here (x int)"))
        assert sa.inspect(first).get_table_names() == ["only_here"]
        assert sa.inspect(second).get_table_names() == []
    finally:
        first.dispose()
        second.dispose()
        postgres_server.drop_database("infra_isolation_other")


def test_each_test_gets_an_empty_database(postgres_url):
    # test_create_table_and_round_trip created "people" in its own database.
    engine = sa.create_engine(postgres_url)
    try:
        assert sa.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_drop_survives_open_connections(postgres_server):
    url = postgres_server.create_database("infra_drop_force")
    engine = sa.create_engine(url)
    conn = engine.connect()  # left open on purpose: drop_database must still work
    conn.execute(sa.text("SELECT 1"))
    postgres_server.drop_database("infra_drop_force")
    engine.dispose()
    admin = sa.create_engine(postgres_server.url("postgres"))
    try:
        with admin.connect() as c:
            gone = sa.text("SELECT count(*) FROM pg_database WHERE datname = 'infra_drop_force'")
            assert c.execute(gone).scalar_one() == 0
    finally:
        admin.dispose()


def test_create_database_from_a_template(postgres_server):
    template_url = postgres_server.create_database("infra_template")
    clone_url = None
    try:
        engine = sa.create_engine(template_url)
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE migrated (x int)"))
            conn.execute(sa.text("INSERT INTO migrated VALUES (42)"))
        engine.dispose()  # a template must have no connections while it is copied
        clone_url = postgres_server.create_database("infra_clone", template="infra_template")
        clone = sa.create_engine(clone_url)
        with clone.connect() as conn:
            assert conn.execute(sa.text("SELECT x FROM migrated")).scalar_one() == 42
        clone.dispose()
    finally:
        postgres_server.drop_database("infra_clone")
        postgres_server.drop_database("infra_template")
