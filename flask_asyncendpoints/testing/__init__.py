"""Helpers for testing apps that use flask-asyncendpoints.

* :mod:`.helpers`: :func:`~.helpers.config_for_tests`, :func:`~.helpers.run_jobs`,
  :class:`~.helpers.FrozenClock`;
* :mod:`.plugin`: pytest fixtures built on them (``pytest_plugins = ["flask_asyncendpoints.testing.plugin"]``).
"""

from __future__ import annotations
