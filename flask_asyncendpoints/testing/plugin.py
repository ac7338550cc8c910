"""A pytest plugin with fixtures for testing apps that use flask-asyncendpoints.

Enable it in the project's ``conftest.py``::

    pytest_plugins = ["flask_asyncendpoints.testing.plugin"]

Fixtures:

``asyncendpoints_clock``
    A :class:`~flask_asyncendpoints.testing.helpers.FrozenClock` for the test.
``asyncendpoints_config``
    :func:`~flask_asyncendpoints.testing.helpers.config_for_tests` on that clock: pass it to the
    app factory in the project's ``app`` fixture.
``run_jobs``
    :func:`~flask_asyncendpoints.testing.helpers.run_jobs`; without an app it uses the current
    app, else the test's ``app`` fixture.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask, current_app, has_app_context

from . import helpers


@pytest.fixture
def asyncendpoints_clock() -> helpers.FrozenClock:
    """A clock that moves only when the test advances it."""
    return helpers.FrozenClock()


@pytest.fixture
def asyncendpoints_config(asyncendpoints_clock: helpers.FrozenClock) -> dict[str, Any]:
    """Config for the app under test: a fresh memory store on ``asyncendpoints_clock``, no worker threads."""
    return helpers.config_for_tests(clock=asyncendpoints_clock)


@pytest.fixture
def run_jobs(request: pytest.FixtureRequest) -> Callable[..., int]:
    """``run_jobs(app=None, *, now=None)``: run every due job in the test's thread; how many ran."""

    def run(app: Flask | None = None, *, now: float | None = None) -> int:
        if app is None:
            app = current_app._get_current_object() if has_app_context() else request.getfixturevalue("app")  # type: ignore[attr-defined]
        return helpers.run_jobs(app, now=now)

    return run
