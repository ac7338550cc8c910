"""The compact JSON encoders every store, answer and size check writes with: the text
``json.dumps`` writes with the same options, and the same values refused."""

from __future__ import annotations

import json
import math
import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flask_asyncendpoints.encoding import NOT_FINITE, NOT_JSON, TOO_DEEP, NotJSONError, compact_encoder, json_text

#: JSON values as handlers return them, floats with infinities and NaN included.
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def dumps(value: Any, *, allow_nan: bool) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=allow_nan)


@pytest.mark.parametrize("allow_nan", [True, False])
@given(value=values)
def test_the_text_is_what_json_dumps_writes(allow_nan: bool, value: Any) -> None:
    encode = compact_encoder(allow_nan=allow_nan)
    try:
        expected = dumps(value, allow_nan=allow_nan)
    except ValueError:
        # NaN or an infinity, refused alike.
        with pytest.raises(ValueError, match="JSON compliant"):
            encode(value)
    else:
        assert encode(value) == expected


def test_what_is_not_json_is_refused_as_json_dumps_refuses_it() -> None:
    encode = compact_encoder(allow_nan=False)
    for value in ({1, 2}, {"a": object()}, [b"bytes"]):
        with pytest.raises(TypeError, match="is not JSON serializable"):
            encode(value)
    with pytest.raises(TypeError, match="keys must be"):
        encode({(1, 2): "tuple key"})


def test_an_error_leaves_nothing_behind_for_the_next_value() -> None:
    # Encoders that share a dict to find cycles keep an entry after an error: the same value
    # written again would then be called circular.
    encode = compact_encoder(allow_nan=False)
    inner: dict[str, float] = {"a": math.nan}
    value = [[1, inner]]
    for _ in range(3):
        with pytest.raises(ValueError, match="JSON compliant"):
            encode(value)
    inner["a"] = 1.5
    assert encode(value) == '[[1,{"a":1.5}]]'


def test_a_value_that_holds_itself_is_too_deep_to_store() -> None:
    looped: list[Any] = [1]
    looped.append(looped)
    with pytest.raises(RecursionError):
        compact_encoder(allow_nan=False)(looped)
    with pytest.raises(NotJSONError) as caught:
        json_text({"result": looped}, "the result")
    assert caught.value.kind == TOO_DEEP


def test_json_text_names_what_it_refuses() -> None:
    with pytest.raises(NotJSONError) as caught:
        json_text({"ok": [1, math.inf]}, "the result")
    assert caught.value.kind == NOT_FINITE and "the result['ok'][1]" in str(caught.value)
    with pytest.raises(NotJSONError) as caught:
        json_text({"when": object()}, "the result")
    assert caught.value.kind == NOT_JSON


def test_one_encoder_serves_many_threads_at_once() -> None:
    encode = compact_encoder(allow_nan=False)
    start = threading.Barrier(4)
    failures: list[str] = []

    def write(number: int) -> None:
        start.wait()
        for step in range(2000):
            value = {"thread": number, "step": step, "items": [number] * (step % 7)}
            if encode(value) != dumps(value, allow_nan=False):
                failures.append(f"{number}/{step}")

    threads = [threading.Thread(target=write, args=(number,)) for number in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
