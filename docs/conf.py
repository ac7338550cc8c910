"""Sphinx configuration for the flask-asyncendpoints documentation."""

from __future__ import annotations

from importlib.metadata import version as _version

project = "flask-asyncendpoints"
author = "flask-asyncendpoints contributors"
copyright = "flask-asyncendpoints contributors"
release = _version("flask-asyncendpoints")
version = ".".join(release.split(".")[:2])

extensions = ["sphinx.ext.autodoc"]

exclude_patterns = ["_build"]
root_doc = "index"

# Signatures show type hints; the parameter lists come from the reST docstrings.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
# Annotations name things documented elsewhere (Flask, werkzeug, marshmallow, redis-py): no
# warnings for references this site cannot resolve.
nitpicky = False

html_theme = "alabaster"
html_theme_options = {
    "description": "Asynchronous request-reply endpoints for Flask",
    "fixed_sidebar": True,
}
html_static_path: list[str] = []
