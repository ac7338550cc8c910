"""The payload JSON of the Redis and SQL stores: what a new job's payload reads back as, with or
without decoding it."""

from __future__ import annotations

import enum
import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flask_asyncendpoints.jobs import JobPayload
from flask_asyncendpoints.stores.jsontext import decode_payload, encode_payload, read_back


class Level(enum.IntEnum):
    HIGH = 1


class Name(str):
    """A str subclass: JSON gives back a plain str."""


#: Values a caller may put in a payload: JSON's own, and what JSON gives back as something else.
values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from([Level.HIGH, Name("n"), -0.0, 2**70]),
    lambda children: (
        st.lists(children, max_size=3)
        | st.tuples(children)
        | st.dictionaries(st.text(max_size=5), children, max_size=3)
        | st.dictionaries(st.integers(0, 3), children, min_size=1, max_size=2)
    ),
    max_leaves=12,
)
texts = st.text(max_size=6)
payloads = st.builds(
    JobPayload,
    body=values,
    headers=st.one_of(
        st.lists(st.tuples(texts, texts), max_size=2).map(tuple),
        st.lists(st.tuples(texts, texts), min_size=1, max_size=2),
        st.just((["X-A", "1"],)),
    ),
    route_params=st.dictionaries(texts, values, max_size=2),
    query_params=st.one_of(
        st.dictionaries(texts, st.lists(texts, max_size=2), max_size=2),
        st.just({"tag": ("a", "b")}),
    ),
    owner=st.one_of(st.none(), texts, st.just(Name("owner"))),
)


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(k, k2) and same(a[k], b[k2]) for k, k2 in zip(a, b, strict=True))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


def same_payload(a: JobPayload, b: JobPayload) -> bool:
    return all(
        same(getattr(a, name), getattr(b, name))
        for name in ("body", "headers", "route_params", "query_params", "owner")
    )


@given(payload=payloads)
def test_a_new_jobs_payload_reads_back_as_decoding_its_json_gives_it(payload: JobPayload) -> None:
    text = encode_payload(payload)
    read = read_back(payload, text)
    assert same_payload(read, decode_payload(text))


def test_a_plain_payload_is_read_back_without_decoding() -> None:
    payload = JobPayload(body={"n": 1, "data": "hello", "ratio": 0.5, "tags": ["a", None, True]})
    assert read_back(payload, encode_payload(payload)) is payload
    with_context = JobPayload(
        body=[1], headers=(("X-A", "1"),), route_params={"year": 2026}, query_params={"tag": ["a"]}, owner="me"
    )
    assert read_back(with_context, encode_payload(with_context)) is with_context


@pytest.mark.parametrize(
    "body",
    [(1, 2), {"level": Level.HIGH}, {1: "int key"}, [Name("x")], {"big": [0.5] * 600}],
    ids=["tuple", "int-enum", "int-key", "str-subclass", "long"],
)
def test_what_json_changes_is_decoded(body: Any) -> None:
    payload = JobPayload(body=body)
    text = encode_payload(payload)
    read = read_back(payload, text)
    assert read is not payload
    assert same_payload(read, decode_payload(text)) and read.body == json.loads(text)["body"]


def test_a_deep_payload_is_decoded_where_the_check_cannot_follow_it() -> None:
    # Short enough to be looked at, deeper than Python's recursion limit allows to look: decoded.
    body: Any = 1
    for _ in range(800):
        body = [body]
    payload = JobPayload(body=body)
    text = encode_payload(payload)
    assert len(text) < 2048
    assert read_back(payload, text).body == body


def test_payload_json_with_whitespace_or_garbage_reads_as_json_loads_reads_it() -> None:
    assert decode_payload(' {"body": [1, 2]} \n').body == [1, 2]
    assert decode_payload("{}") == JobPayload()
    with pytest.raises(json.JSONDecodeError, match="Extra data"):
        decode_payload('{"body": 1} x')
    with pytest.raises(json.JSONDecodeError):
        decode_payload('{"body": ')
