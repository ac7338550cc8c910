"""What every submit shares: the payload as stored and its size (flask_asyncendpoints.submitting)."""

from __future__ import annotations

from typing import Any

import pytest

from flask_asyncendpoints.config import Settings
from flask_asyncendpoints.encoding import json_bytes
from flask_asyncendpoints.errors import InvalidPayload
from flask_asyncendpoints.submitting import build_payload


@pytest.fixture
def settings() -> Settings:
    from flask import Flask

    from flask_asyncendpoints import AsyncEndpoints

    app = Flask(__name__)
    AsyncEndpoints(app)
    return app.extensions["asyncendpoints"].settings  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("body", "headers", "route_params", "query_params", "owner"),
    [
        ({"n": 1}, [], {}, {}, None),
        (None, [], {}, {}, None),
        ("é", [("X-Trace", "ü"), ("Authorization", "secret")], {"id": 3}, {"q": ["a", "b"]}, "owner-1"),
        ([], [("A", "b")], {}, {"q": []}, None),
    ],
)
def test_sizes_are_those_of_the_stored_json(
    settings: Settings, body: Any, headers: Any, route_params: Any, query_params: Any, owner: str | None
) -> None:
    checked = build_payload(settings, body, headers, route_params, query_params, owner)
    kept = [list(pair) for pair in checked.payload.headers]
    assert checked.body_bytes == (json_bytes(body, "body") if body is not None else 0)
    assert checked.context_bytes == (
        json_bytes(kept, "headers")
        + json_bytes(route_params, "route_params")
        + json_bytes(query_params, "query_params")
        + (json_bytes(owner, "owner") if owner is not None else 0)
    )
    assert all(name != "Authorization" for name, _ in checked.payload.headers)


def test_a_parameter_that_is_not_json_is_refused_even_when_others_are_empty(settings: Settings) -> None:
    with pytest.raises(InvalidPayload, match="route_params"):
        build_payload(settings, None, [], {"x": float("nan")}, {}, None)
