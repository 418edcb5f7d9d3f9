"""An unchanged full sync tells a stored user unchanged with ``unchanged``, without building
the wanted values: it must answer exactly ``not changes_of(row, desired(entry), managed)``,
or a change in one attribute would be skipped (or an unchanged user rewritten)."""

from __future__ import annotations

from types import SimpleNamespace

from hypothesis import example, given, settings
from hypothesis import strategies as st

from bridge.ldap.directory import UserEntry
from bridge.ldap.users import FIELDS, changes_of, desired, unchanged

MANAGED = frozenset({"department", "employeeNumber"})
_TEXT = st.sampled_from([None, "", " ", "a", "A", "a ", "b"])
_VALUE = st.sampled_from(["D1", "D2", ["D1", "D2"], ["D2", "D1"], "", None])
_ATTRIBUTES = st.dictionaries(st.sampled_from(["department", "employeeNumber", "emails", "other"]), _VALUE,
                              max_size=4)


def _entry(draw: st.DrawFn) -> UserEntry:
    return UserEntry(source_id="s1", dn=draw(st.sampled_from(["uid=a,dc=x", "uid=A,dc=x", "uid=b,dc=x"])),
                     user_name=draw(_TEXT), display_name=draw(_TEXT), given_name=draw(_TEXT),
                     family_name=draw(_TEXT), email=draw(st.sampled_from([None, "", "a@x.org", " a@x.org "])),
                     active=draw(st.booleans()),
                     attributes={k: v for k, v in draw(_ATTRIBUTES).items() if k in MANAGED},
                     modified=None)


@st.composite
def _pairs(draw: st.DrawFn) -> tuple[SimpleNamespace, UserEntry]:
    entry = _entry(draw)
    row = SimpleNamespace(**desired(entry))
    row.attributes = {**draw(_ATTRIBUTES), **entry.attributes} if draw(st.booleans()) else row.attributes
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=2)):  # then change a field or two
        if name == "attributes":
            row.attributes = draw(st.none() | _ATTRIBUTES)
        elif name == "active":
            row.active = not row.active
        else:
            setattr(row, name, draw(_TEXT | st.sampled_from(["uid=a,dc=x", "a@x.org"])))
    return row, entry


@settings(max_examples=3000)
@given(_pairs())
@example((SimpleNamespace(user_name="a", display_name=None, given_name=None, family_name=None, email=None,
                          active=True, ldap_dn="uid=a,dc=x", attributes=None),
          UserEntry("s1", "uid=a,dc=x", "a", None, None, None, None, True, {}, None)))
def test_unchanged_answers_as_changes_of_does(pair):
    row, entry = pair
    assert unchanged(row, entry, MANAGED) == (not changes_of(row, desired(entry), MANAGED))  # type: ignore[arg-type]


def test_a_change_of_one_managed_attribute_or_a_foreign_key_gone_is_seen():
    entry = UserEntry("s1", "uid=a,dc=x", "a", "A", None, None, "a@x.org", True, {"department": "D1"}, None)
    row = SimpleNamespace(**desired(entry))
    row.attributes = {"department": "D1", "emails": [{"value": "a@x.org"}]}  # a key the sync does not own
    assert unchanged(row, entry, MANAGED)  # type: ignore[arg-type]
    row.attributes = {"department": "D2", "emails": [{"value": "a@x.org"}]}
    assert not unchanged(row, entry, MANAGED)  # type: ignore[arg-type]
    row.attributes = {"department": "D1", "employeeNumber": "7"}  # a managed key the entry no longer has
    assert not unchanged(row, entry, MANAGED)  # type: ignore[arg-type]
