"""CSRF protection of the dashboard's actions: a token per browser session, in a cookie and each form.

The token is random; the cookie that carries it is ``HttpOnly``, ``SameSite=Strict``, limited to the
dashboard's path and, when the app has a ``SECRET_KEY``, signed with it (itsdangerous, as Flask's
session is). Each action form carries the token in a hidden field; a ``POST`` is accepted only when
the field matches the token in a valid cookie. Another site can make a browser send the cookie (or,
with ``SameSite=Strict``, not even that) but cannot read it to fill in the field, and without the
app's key it cannot forge a signed cookie from a sibling domain either. The app's own session is
not touched, so the dashboard works whether or not the app uses one.
"""

from __future__ import annotations

import hmac
import secrets

from flask import Response, current_app, g, request
from itsdangerous import BadSignature, URLSafeSerializer

#: The cookie that carries the token.
COOKIE_NAME = "asyncendpoints_dashboard_csrf"

#: The form field that carries the token.
FIELD_NAME = "csrf_token"

_SALT = "flask-asyncendpoints.dashboard.csrf"
_G_TOKEN = "_asyncendpoints_csrf_token"
_G_NEW = "_asyncendpoints_csrf_new"


def _serializer() -> URLSafeSerializer | None:
    key = current_app.secret_key
    return URLSafeSerializer(key, salt=_SALT) if key else None


def _cookie_token() -> str | None:
    """The token in the request's cookie, if there is one and it is valid."""
    raw = request.cookies.get(COOKIE_NAME)
    if not raw:
        return None
    serializer = _serializer()
    if serializer is None:
        return raw
    try:
        token = serializer.loads(raw)
    except BadSignature:
        return None
    return token if isinstance(token, str) else None


def csrf_token() -> str:
    """The token for the forms of this page: the browser's own, or a new one sent with the answer."""
    token: str | None = g.get(_G_TOKEN)
    if token is None:
        token = _cookie_token()
        if token is None:
            token = secrets.token_urlsafe(32)
            setattr(g, _G_NEW, True)
        setattr(g, _G_TOKEN, token)
    return token


def valid_post() -> bool:
    """Whether the current ``POST`` carries the token of a valid cookie in its form."""
    expected = _cookie_token()
    given = request.form.get(FIELD_NAME, "")
    return expected is not None and bool(given) and hmac.compare_digest(expected.encode(), given.encode())


def set_cookie(response: Response, path: str) -> Response:
    """Send a new token's cookie with the answer, when this request made one.

    :param response: the answer.
    :param path: the cookie's path: where the dashboard is mounted.
    """
    if g.get(_G_NEW):
        token: str = g.get(_G_TOKEN)
        serializer = _serializer()
        value = serializer.dumps(token) if serializer is not None else token
        response.set_cookie(
            COOKIE_NAME,
            str(value),
            path=path,
            httponly=True,
            samesite="Strict",
            secure=request.is_secure,
        )
    return response
