"""bridge.jsonio: orjson where it can, the same values as the standard library always."""

from __future__ import annotations

import json
import math

import pytest

from bridge import jsonio

DOCUMENTS = [
    {"userName": "Zoë Ünïcode", "emails": [{"value": "z@example.org", "primary": True}], "n": 12, "x": 1.5},
    {"nested": {"deep": [[[{"a": None}]]]}, "empty": {}, "list": []},
    {"big": 2**70, "negative": -(2**64)},  # past 64 bits: json keeps every digit
    {"digits in a string": "12345678901234567890123", "ok": 1},
    {"lone surrogate": "\ud800", "emoji": "\U0001f600"},  # orjson refuses the first; json writes \ud800
    ["\u0000 control \t and \u2028 separators"],
]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_what_is_written_reads_back_as_the_same_value(document):
    written = jsonio.dumps(document)
    assert isinstance(written, bytes)
    assert json.loads(written) == document  # any JSON reader gets the value back
    assert jsonio.loads(written) == document
    assert jsonio.loads(jsonio.dumps_text(document)) == document


@pytest.mark.parametrize("document", DOCUMENTS)
def test_reads_what_the_standard_library_wrote(document):
    assert jsonio.loads(json.dumps(document)) == document
    assert jsonio.loads(json.dumps(document, ensure_ascii=False)) == document


def test_integers_past_64_bits_keep_every_digit():
    value = jsonio.loads('{"id": 123456789012345678901234567890}')
    assert value == {"id": 123456789012345678901234567890}
    assert isinstance(value["id"], int)


def test_nan_the_standard_library_wrote_is_read():
    assert math.isnan(jsonio.loads('{"x": NaN}')["x"])


def test_nan_and_infinity_are_written_as_null():
    """JSON has no NaN: the standard library wrote the invalid ``NaN``, orjson writes null,
    which every client reads."""
    assert json.loads(jsonio.dumps({"x": float("nan"), "y": float("inf"), "z": -float("inf")})) == {
        "x": None, "y": None, "z": None}


def test_keys_that_are_not_strings_are_written_as_json_writes_them():
    assert json.loads(jsonio.dumps({1: "one", "2": "two"})) == {"1": "one", "2": "two"}


def test_invalid_json_is_still_an_error():
    with pytest.raises(ValueError):
        jsonio.loads('{"unterminated": ')
