"""Who is calling: ``Authorization: Bearer`` keys from the store.

A server bound to anything but loopback requires a key on every ``/v1`` and ``/api`` route.
On loopback, keys are required as soon as one exists; before that the caller is the local
admin (a developer's laptop needs no ceremony). Keys are checked against a short cache, so
authentication costs no database round trip on the hot path.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from typing import Annotated

from fastapi import Depends, Request

from openclone.errors import AuthenticationError, PermissionDenied
from openclone.gateway.state import Gateway, GatewayDep
from openclone.store.accounts import LOCAL, Principal
from openclone.store.keys import any_keys, authenticate, cached_principal

__all__ = ["AdminDep", "CallerDep", "caller", "is_loopback"]

_KEYS_TTL = 2.0  # seconds between "does any key exist yet?" checks on loopback


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _keys_exist(gw: Gateway) -> bool:
    now = time.monotonic()
    if gw.keys_checked > now:
        return gw.keys_exist
    assert gw.store is not None
    gw.keys_exist = await asyncio.to_thread(any_keys, gw.store)
    gw.keys_checked = now + _KEYS_TTL
    return gw.keys_exist


async def caller(request: Request, gw: GatewayDep) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else ""
    if gw.store is None:
        who = LOCAL  # no store, no keys: the server is a bare model server
    elif token.startswith("oc-"):
        known, found = cached_principal(gw.store, token)
        if not known:
            found = await asyncio.to_thread(authenticate, gw.store, token)
        if found is None:
            raise AuthenticationError("Incorrect API key provided.", code="invalid_api_key")
        who = found
    elif not is_loopback(gw.settings.host) or await _keys_exist(gw):
        raise AuthenticationError(
            "You didn't provide an API key. Send it as 'Authorization: Bearer oc-...' "
            "(create one with `openclone keys create --tenant NAME`).",
            code="invalid_api_key",
        )
    else:
        who = LOCAL  # loopback, no key exists yet; an OpenAI client's dummy key is fine
    request.state.caller = who
    return who


CallerDep = Annotated[Principal, Depends(caller)]


async def _admin(who: CallerDep) -> Principal:
    if not who.is_admin:
        raise PermissionDenied("this needs an admin key")
    return who


AdminDep = Annotated[Principal, Depends(_admin)]
