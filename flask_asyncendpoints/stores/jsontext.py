"""The JSON text of a job's parts as the Redis and SQL stores keep them: compact, UTF-8, written
once per value. (The memory store keeps the objects themselves.)"""

from __future__ import annotations

import json
import math

from ..encoding import compact_encoder
from ..jobs import JobError, JobPayload

#: Compact JSON (the values written here are checked already: NaN is let through, as json.dumps would).
compact_json = compact_encoder(allow_nan=True)


def encode_payload(payload: JobPayload) -> str:
    # Empty members are left out (JobPayload.from_dict fills them in) to keep small jobs small.
    if not (payload.headers or payload.route_params or payload.query_params) and payload.owner is None:
        # Every job submitted from Python: the body alone, as compact_json({"body": ...}) writes it.
        return "{}" if payload.body is None else f'{{"body":{compact_json(payload.body)}}}'
    data = payload.to_dict()
    for key in ("headers", "routeParams", "queryParams"):
        if not data[key]:
            del data[key]
    if data["body"] is None:
        del data["body"]
    return compact_json(data)


#: Reads the payloads written here: ``raw_decode`` does not look for the whitespace around the text
#: that ``json.loads`` skips, of which compact JSON has none.
_DECODER = json.JSONDecoder()


def decode_payload(text: str) -> JobPayload:
    try:
        data, end = _DECODER.raw_decode(text)
    except ValueError:
        end = -1
    if end != len(text):
        data = json.loads(text)  # whitespace around the value, or the error that says what is wrong
    return JobPayload.from_dict(data)


#: Up to this length of payload JSON, :func:`read_back` looks at the values; past it decoding is faster.
_READ_BACK_CHECK_MAX = 2048
_ATOMS = (str, int, bool, type(None))


def read_back(payload: JobPayload, text: str) -> JobPayload:
    """``payload`` as ``decode_payload(text)`` gives it back, ``text`` being its :func:`encode_payload`:
    ``payload`` itself when it holds only what JSON gives back unchanged (dicts with string keys,
    lists, strings, whole numbers, booleans, ``None``, finite floats; its headers as pairs of
    strings), else ``text`` decoded (a tuple comes back a list, an ``IntEnum`` an ``int``...). A new
    job's payload is so read back once per create: looking at a small one costs less than decoding it.
    """
    if len(text) <= _READ_BACK_CHECK_MAX:
        try:
            if _plain_payload(payload):
                return payload
        except RecursionError:  # nested deeper than the check can follow, not than JSON can hold
            pass
    return decode_payload(text)


def _plain_payload(payload: JobPayload) -> bool:
    headers, route, query, owner = payload.headers, payload.route_params, payload.query_params, payload.owner
    return (
        type(headers) is tuple
        and (not headers or all(_text_pair(pair) for pair in headers))
        and type(query) is dict
        and (not query or all(type(name) is str and _texts(values) for name, values in query.items()))
        and (owner is None or type(owner) is str)
        and type(route) is dict
        and (not route or _plain(route))
        and _plain(payload.body)
    )


def _text_pair(pair: object) -> bool:
    return type(pair) is tuple and len(pair) == 2 and type(pair[0]) is str and type(pair[1]) is str


def _texts(values: object) -> bool:
    return type(values) is list and all(type(value) is str for value in values)


def _plain(value: object) -> bool:
    """Whether JSON gives ``value`` back equal and of the same types."""
    kind = type(value)
    if kind in _ATOMS:
        return True
    if isinstance(value, float):
        return kind is float and math.isfinite(value)
    if isinstance(value, dict):
        return kind is dict and all(
            type(key) is str and (type(item) in _ATOMS or _plain(item)) for key, item in value.items()
        )
    if isinstance(value, list):
        return kind is list and all(type(item) in _ATOMS or _plain(item) for item in value)
    return False


def encode_error(error: JobError) -> str:
    # Tracebacks are always stored; whether they are shown is decided when the job is rendered.
    return compact_json(error.to_record())
