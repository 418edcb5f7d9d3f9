"""The SCIM hot path's lookup (bridge.scim.fast.LOOKUP, StoreStorage.lookup_documents) against
scim2-models' filter parser and bridge.scim.filters: a filter the lookup reads is the
comparison scim2-models parses, and its WHERE clause is the one a search builds for it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scim2_models import Context, SearchRequest
from scim2_models.path import CompareOperator, Comparison
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from bridge.names import identity_key
from bridge.scim.fast import LOOKUP, LOOKUP_ATTRIBUTES
from bridge.scim.filters import SqlDialect, scim_key, where_clause
from bridge.scim.schema import ScimUser
from bridge.scim.storage import lookup_where
from bridge.services.visibility import Visibility
from bridge.store.models import User

SEARCH = SearchRequest[ScimUser]  # type: ignore[type-arg]


def parsed(text: str) -> Comparison:
    node = SEARCH.model_validate({"filter": text}, scim_ctx=Context.SEARCH_REQUEST).filter.ast
    assert isinstance(node, Comparison)
    return node


def read(text: str) -> tuple[str, str] | None:
    """(attribute, value) as the hot path reads the filter, or None when it leaves it to scim2-models."""
    found = LOOKUP.fullmatch(text)
    if not found or found[2].lower() != "eq" or found[1].lower() not in LOOKUP_ATTRIBUTES:
        return None
    return LOOKUP_ATTRIBUTES[found[1].lower()], found[3]


NAMES = st.sampled_from(["userName", "USERNAME", "username", "uSeRnAmE", "externalId", "EXTERNALID"])
OPERATORS = st.sampled_from(["eq", "EQ", "Eq", "eQ"])


@given(NAMES, OPERATORS, st.text())
def test_what_the_lookup_reads_is_what_scim2_models_parses(name, operator, value):
    text = f'{name} {operator} "{value}"'
    read_as = read(text)
    if read_as is None:
        assert any(c in value for c in '"\\') or any(ord(c) < 32 or ord(c) == 127 for c in value)
        return
    attribute, read_value = read_as
    node = parsed(text)
    assert node.op == CompareOperator.eq and node.value == read_value == value
    assert node.attr_path.uri is None and node.attr_path.sub_attr is None
    assert node.attr_path.attr.lower() == attribute.lower()


@pytest.mark.parametrize("text", ['userName  eq "x"', ' userName eq "x"', 'userName eq "x" ', 'userName\teq "x"',
                                  'userName eq "a\\"b"', 'userName eq "x\\u0041"', 'userName ne "x"',
                                  'displayName eq "x"', 'urn:ietf:params:scim:schemas:core:2.0:User:userName eq "x"',
                                  'userName eq "x" or userName eq "y"', 'userName eq x', 'emails.value eq "x"'])
def test_other_spellings_are_left_to_scim2_models(text):
    assert read(text) is None


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()], ids=["sqlite", "postgresql"])
@pytest.mark.parametrize("sources", [None, frozenset({"scim:entra"}), frozenset({"scim:entra", "ldap:corp"})])
@pytest.mark.parametrize("text", ['userName eq "Test_User_1"', 'USERNAME eq "ZOË.Ångström"', 'userName eq ""',
                                  'userName eq "ｔｅｓｔ İ"', 'externalId eq "ext-3"', 'EXTERNALID eq "ÄX"'])
def test_the_lookup_where_clause_is_the_searchs(dialect, sources, text):
    read_as = read(text)
    assert read_as is not None
    attribute, value = read_as
    visibility = Visibility(sources)
    store_dialect = SqlDialect(dialect.name)
    searched = select(User.id).where(visibility.users()).where(
        where_clause(store_dialect, ScimUser, parsed(text)))
    params = {"value": scim_key(value), "key": identity_key(value)} if attribute == "userName" else {"value": value}
    looked_up = select(User.id).where(*lookup_where(store_dialect, attribute, visibility)).params(params)

    def sql(statement):
        return str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    assert sql(looked_up) == sql(searched)
