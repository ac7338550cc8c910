"""Two modules with a schema class of the same name, for the OpenAPI naming test."""

from . import first, second

__all__ = ["first", "second"]
