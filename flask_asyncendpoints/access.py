"""Who may open the operators' pages (the dashboard, the metrics): local requests by default, or the
app's own rule.

By default only a request from this machine is let in: ``request.remote_addr`` a loopback address
(``127.0.0.1``, ``::1``). A request that came through a proxy on this machine also has a loopback
``remote_addr``, so one that carries a forwarding header (``X-Forwarded-For``, ``Forwarded``,
``X-Real-IP``) counts as remote, unless werkzeug's ``ProxyFix`` already rewrote ``remote_addr``
from it (then ``remote_addr`` is the client's, as far as the app trusts its proxies). The headers
themselves are never trusted: anyone can send them.

An app that registers :meth:`~flask_asyncendpoints.AsyncEndpoints.dashboard_access` decides alone;
it can call :func:`is_local_request` to keep the local rule as part of its own.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from flask import Response, current_app, request

from .registry import Registry

#: Request headers a proxy adds; a loopback request that has one came from elsewhere.
FORWARDING_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")

#: What werkzeug's ``ProxyFix`` leaves in the WSGI environ when it has rewritten ``remote_addr``.
PROXY_FIX_ENVIRON_KEY = "werkzeug.proxy_fix.orig"


@dataclass(frozen=True)
class Refusal:
    """Why a request was not let in, for the ``403`` page.

    :ivar reason: one sentence on what was seen.
    :ivar proxied: the request came through a proxy the app does not trust (no ``ProxyFix``).
    :ivar hooked: the app's own access function said no.
    """

    reason: str
    proxied: bool = False
    hooked: bool = False


def is_local_request() -> bool:
    """Whether the current request comes from this machine and not through an untrusted proxy.

    ``True`` when ``request.remote_addr`` is a loopback address and either the request has no
    forwarding header or werkzeug's ``ProxyFix`` has already applied it.
    """
    return _local_refusal() is None


def _local_refusal() -> Refusal | None:
    address = _loopback(request.remote_addr)
    if not address:
        return Refusal(f"This request comes from {request.remote_addr or 'an unknown address'}, not from this machine.")
    if PROXY_FIX_ENVIRON_KEY not in request.environ:
        forwarded = [name for name in FORWARDING_HEADERS if name in request.headers]
        if forwarded:
            return Refusal(
                f"This request reached the app from this machine but carries {forwarded[0]}: it came through a "
                "proxy, so the client's address is not known.",
                proxied=True,
            )
    return None


def _loopback(remote_addr: str | None) -> bool:
    if not remote_addr:
        return False
    try:
        address = ipaddress.ip_address(remote_addr.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def check_access(registry: Registry) -> Refusal | Response | None:
    """Decide on the current request: ``None`` to let it in, a :class:`Refusal`, or the response
    the app's access function answered instead (a redirect to its login page, say).

    :param registry: the extension's registry, with the app's ``dashboard_access`` function if any.
    """
    func = registry.dashboard_access_func
    if func is None:
        return _local_refusal()
    answer = func()
    if answer is True:
        return None
    if answer is False or answer is None:
        return Refusal("The app's dashboard access function refused this request.", hooked=True)
    return current_app.make_response(answer)
