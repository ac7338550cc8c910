"""Testing support for flask-asyncendpoints.

* :mod:`.helpers`: :func:`~.helpers.config_for_tests`, :func:`~.helpers.run_jobs`,
  :class:`~.helpers.FrozenClock`, for the tests of an app that uses the extension;
* :mod:`.plugin`: pytest fixtures built on them (``pytest_plugins = ["flask_asyncendpoints.testing.plugin"]``);
* :mod:`.contract`: the store contract suite, the tests every built-in store passes, for the tests
  of a store of your own.

The plugin and the contract suite need pytest, which the library itself does not: import them from
your tests only.
"""

from __future__ import annotations
