"""Hypothesis strategies the endpoint fuzzers share: hostile text, JSON, bodies and headers."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

# Characters that break naive code: NUL and controls, lone surrogates (valid as JSON escapes,
# not encodable as UTF-8), bidi overrides, a BOM, markup and template syntax.
_NASTY_CHARS = "\x00\x01\x1b\x7f\t\r\n\u0085\u2028\u202e\ufeff\ufffd<>&\"'/\\@#%{}[]]"

# Text any JSON encoder writes as valid UTF-8 (no lone surrogates).
unicode_texts = st.text(st.one_of(st.characters(), st.sampled_from(_NASTY_CHARS)), max_size=60)

texts = st.text(
    st.one_of(
        st.characters(),
        st.characters(categories=["Cs"]),  # lone surrogates: excluded by default
        st.sampled_from(_NASTY_CHARS),
    ),
    max_size=60,
)

nasty_strings = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "\ud800",
        "]]>",
        "<![CDATA[x]]>",
        "{ticket}",
        "%s%n%x",
        "${jndi:ldap://127.0.0.1/x}",
        "../../etc/passwd",
        "1e999999",
        "-0",
        "NaN",
        "9" * 5000,  # over Python's 4300-digit int parsing limit
        "a" * 5000,
        "😀" * 300,
        "\u202eevil",
    ]
)

strings = st.one_of(texts, nasty_strings)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    strings,
)

json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(strings, inner, max_size=4)
    ),
    max_leaves=12,
)


def either(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a plausible value of a field, sometimes any JSON value in its place."""
    return st.one_of(good, good, json_values)


def dumps(value: Any) -> bytes:
    """JSON the way a sender might write it (lone surrogates become ``\\udxxx`` escapes)."""
    return json.dumps(value, ensure_ascii=True).encode()


# Nesting deeper than Python's recursion limit: ``json.loads`` raises RecursionError.
deep_json = st.sampled_from(
    [
        b"[" * 20_000,
        b"[" * 20_000 + b"]" * 20_000,
        b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    ]
)

# JSON that parses nowhere, or badly: huge numbers, NaN, a BOM, duplicate keys, another
# encoding, truncation, a bare scalar.
shallow_hostile_json = st.sampled_from(
    [
        b"",
        b" ",
        b"{",
        b"}",
        b"[]",
        b"null",
        b'"text"',
        b"1e999999",
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b"\xef\xbb\xbf{}",
        b'{"a": 1, "a": 2}',
        '{"text": "\u00fc"}'.encode("utf-16"),
        b'{"text": "\xff\xfe"}',
        b'{"text": "\\ud800"}',
        b"1" * 5000,
        b'{"n": ' + b"9" * 5000 + b"}",
        b"\x00" * 64,
    ]
)

hostile_json = st.one_of(shallow_hostile_json, deep_json)


def bodies(
    valid: st.SearchStrategy[Any],
    encode: Callable[[Any], bytes] = dumps,
    hostile: st.SearchStrategy[bytes] = hostile_json,
) -> st.SearchStrategy[bytes]:
    """Bodies for a JSON endpoint: mostly plausible-but-hostile documents, also any JSON,
    known-bad JSON and random bytes."""
    return st.one_of(
        valid.map(encode),
        valid.map(encode),
        json_values.map(encode),
        hostile,
        st.binary(max_size=200),
    )


# Header values that are still valid HTTP (visible ASCII, space, obs-text bytes 0x80-0xff):
# a non-UTF-8 header must reach the handler, not be refused by the HTTP parser.
_HEADER_BYTES = [b for b in range(0x20, 0x100) if b != 0x7F]
header_values = st.one_of(
    st.lists(st.sampled_from(_HEADER_BYTES), max_size=40).map(bytes),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40).map(str.encode),
)
