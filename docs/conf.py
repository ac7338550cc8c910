"""Sphinx configuration for the flask-asyncendpoints documentation."""

from __future__ import annotations

from importlib.metadata import version as _version

project = "flask-asyncendpoints"
author = "flask-asyncendpoints contributors"
copyright = "flask-asyncendpoints contributors"
release = _version("flask-asyncendpoints")
version = ".".join(release.split(".")[:2])

extensions = ["sphinx.ext.autodoc", "sphinx.ext.intersphinx", "sphinx_click"]

exclude_patterns = ["_build", "_examples"]
root_doc = "index"

# Signatures show type hints; the parameter lists come from the reST docstrings.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True

# Every reference must resolve: CI builds with -n -W.
nitpicky = True

# The inventories are vendored (docs/_inventories/), so the build needs no network. They come from
# Debian's documentation packages (python3.11-doc, python-flask-doc, python-werkzeug-doc,
# python-click-doc, python3-marshmallow-doc, python-blinker-doc, python-apispec-doc), and each
# mapping points at the docs of the version its inventory was built from. To refresh one, replace
# its file with the objects.inv of a newer release and update the URL.
intersphinx_mapping = {
    "python": ("https://docs.python.org/3.11/", "_inventories/python.inv"),
    "flask": ("https://flask.palletsprojects.com/en/2.2.x/", "_inventories/flask.inv"),
    "werkzeug": ("https://werkzeug.palletsprojects.com/en/2.2.x/", "_inventories/werkzeug.inv"),
    "click": ("https://click.palletsprojects.com/en/8.1.x/", "_inventories/click.inv"),
    "marshmallow": ("https://marshmallow.readthedocs.io/en/3.18.0/", "_inventories/marshmallow.inv"),
    "blinker": ("https://blinker.readthedocs.io/en/stable/", "_inventories/blinker.inv"),
    "apispec": ("https://apispec.readthedocs.io/en/5.2.2/", "_inventories/apispec.inv"),
    # redis-py publishes no inventory that can be had offline: its names are listed below instead
    # (written as plain text in the docs), and the build fetches nothing.
}
intersphinx_timeout = 1

# Names in signatures that no vendored inventory covers: redis-py's, and the type aliases and
# annotation-only names of the libraries used (documented by their own projects in prose only).
nitpick_ignore_regex = [
    (r"py:.*", r"redis(\..*)?"),
    # Nor does SQLAlchemy's (its names are written out where the docs use them).
    (r"py:.*", r"sqlalchemy(\..*)?"),
    (r"py:.*", r"apispec\.APISpec"),
    (r"py:.*", r"flask\.typing\..*"),
    (r"py:.*", r"ft\..*"),
    (r"py:.*", r"werkzeug\.datastructures\.(Headers|MultiDict)"),
    (r"py:.*", r"werkzeug\.sansio\.response\.Response"),
    (r"py:.*", r"(marshmallow\.)?(schema\.)?Schema"),
    (r"py:.*", r"(H|F|T)"),
    (r"py:class", r"(_io|email\.message)\..*"),
    (r"py:class", r"flask_asyncendpoints\.(extension|hooks)\.(F|H)"),
    (
        r"py:class",
        r"Validator|ViewDecorator|Blueprint|ResponseHook|OwnerFunc|AuthorizeFunc|BeforeSubmit|DashboardAccessFunc"
        r"|Flask|APISpec",
    ),
    # Nor does prometheus-client's.
    (r"py:.*", r"(prometheus_client\.)?CollectorRegistry"),
    (r"py:class", r"(dict|tuple|list)\[.*"),
]

html_theme = "alabaster"
html_theme_options = {
    "description": "Asynchronous request-reply endpoints for Flask",
    "fixed_sidebar": True,
}
html_static_path: list[str] = []
