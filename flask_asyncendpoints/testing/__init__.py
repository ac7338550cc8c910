"""Testing support for flask-asyncendpoints.

:mod:`flask_asyncendpoints.testing.contract` is the store contract suite: the tests every built-in
store passes, for the tests of a store of your own. It needs pytest, which the library itself does
not: import it from your tests only.
"""
