"""Strict JSON as the stores keep it: UTF-8 text with no NaN, no infinities and no lone surrogates.

Python's :mod:`json` accepts more than that: ``json.loads('"\\ud800"')`` gives a string holding a
lone UTF-16 surrogate, which no UTF-8 encoder will write, and ``1e400`` reads as an infinity, which
is not JSON. A value like that must be refused where it enters (a submit, a handler's result), not
where a store or a response tries to write it. Nothing here imports Flask or redis.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from json.encoder import encode_basestring
from typing import Any


def compact_encoder(*, allow_nan: bool) -> Callable[[Any], str]:
    """``json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=allow_nan).encode``,
    with its C encoder built once.

    ``JSONEncoder.encode`` builds a new C encoder on every call, with a fresh dict to detect a value
    that holds itself: that set-up costs more than writing a small body. This one is built once and
    shared by every thread, so it keeps no such dict (a shared one would keep an entry behind after
    any error): a value that holds itself fails with ``RecursionError``, as one nested too deeply
    does, where ``JSONEncoder`` raises ``ValueError``. Everything else is written and refused alike.
    Without ``json``'s C accelerator (PyPy) it is the ``JSONEncoder``'s own ``encode``.
    """
    # What JSONEncoder.iterencode calls (typeshed does not list it); None without the accelerator.
    make: Any = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return json.JSONEncoder(allow_nan=allow_nan, ensure_ascii=False, separators=(",", ":")).encode
    encoder = make(None, json.JSONEncoder().default, encode_basestring, None, ":", ",", False, False, allow_nan)

    def encode(value: Any) -> str:
        return "".join(encoder(value, 0))

    return encode


#: Compact, strict JSON text: no NaN or infinities, non-ASCII written as it is.
strict_json = compact_encoder(allow_nan=False)


#: What :attr:`NotJSONError.kind` says about the value.
SURROGATE = "surrogate"
NOT_FINITE = "not-finite"
NOT_JSON = "not-json"
TOO_DEEP = "too-deep"


class NotJSONError(ValueError):
    """A value cannot be written as UTF-8 JSON; the message names where in it and why.

    :param message: what is wrong and where, e.g. ``body['name'] holds a lone UTF-16 surrogate ('\\udcff')``.
    :param kind: :data:`SURROGATE`, :data:`NOT_FINITE`, :data:`NOT_JSON` or :data:`TOO_DEEP`.
    """

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def json_bytes(value: Any, where: str) -> int:
    """The size in bytes of ``value`` as strict UTF-8 JSON.

    :param value: JSON data (dicts, lists, strings, numbers, booleans, ``None``).
    :param where: how to name ``value`` in the message, e.g. ``"body"``.
    :raises NotJSONError: when it cannot be written, naming the first part that cannot.
    """
    text = json_text(value, where)
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def json_text(value: Any, where: str) -> str:
    """``value`` as strict, compact JSON text that encodes to UTF-8.

    :param value: JSON data.
    :param where: how to name ``value`` in the message, e.g. ``"result"``.
    :raises NotJSONError: when it cannot be written, naming the first part that cannot.
    """
    if value is None:  # a handler that returns nothing: the encoder's set-up would cost more than the rest
        return "null"
    try:
        text = strict_json(value)
        if not text.isascii():
            text.encode("utf-8")  # a lone surrogate is the one thing a str holds that UTF-8 cannot
    except (TypeError, ValueError, RecursionError) as exc:
        raise describe(value, where) or NotJSONError(f"{where} is not JSON ({exc})", NOT_JSON) from None
    return text


def describe(value: Any, where: str) -> NotJSONError | None:
    """Why ``value`` (named ``where``) cannot be written as strict UTF-8 JSON; ``None`` if it can.

    Walks the value to name the first part that cannot, as a path such as ``body['files'][2]``.
    """
    try:
        return _describe(value, where)
    except RecursionError:
        return NotJSONError(f"{where} is nested too deeply", TOO_DEEP)


def _describe(value: Any, where: str) -> NotJSONError | None:
    if value is None or isinstance(value, (bool, int)):
        return None
    if isinstance(value, str):
        bad = surrogate_in(value)
        if bad is not None:
            return NotJSONError(f"{where} holds a lone UTF-16 surrogate ({bad!a})", SURROGATE)
        return None
    if isinstance(value, float):
        return (
            None if math.isfinite(value) else NotJSONError(f"{where} is {value!r}, which JSON cannot hold", NOT_FINITE)
        )
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                bad = surrogate_in(key)
                if bad is not None:
                    return NotJSONError(f"the key {key!a} in {where} holds a lone UTF-16 surrogate", SURROGATE)
            elif not (key is None or isinstance(key, (bool, int, float))):
                return NotJSONError(f"the key {key!r} in {where} is a {type(key).__name__}, not a string", NOT_JSON)
            found = _describe(item, f"{where}[{key!a}]")
            if found is not None:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _describe(item, f"{where}[{index}]")
            if found is not None:
                return found
        return None
    return NotJSONError(f"{where} is a {type(value).__name__}, not a JSON value", NOT_JSON)


def surrogate_in(text: str) -> str | None:
    """The first lone surrogate in ``text`` (a code point from U+D800 to U+DFFF), or ``None``."""
    if text.isascii():
        return None
    for char in text:
        if "\ud800" <= char <= "\udfff":
            return char
    return None


def safe_text(text: str) -> str:
    """``text`` with any lone surrogate written as its escape (``\\udcff``), so it encodes to UTF-8.

    For what the library writes itself from what it did not choose: exception messages, stack
    traces, progress notes. Text that encodes already is returned as it is.
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text
