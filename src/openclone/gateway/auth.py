"""Who is calling: ``Authorization: Bearer`` keys from the store.

``Settings.auth`` decides who a call without a key is:

- ``keys``: nobody (401). A server bound beyond loopback always behaves so.
- ``none``: the local admin, for loopback development (the settings refuse it elsewhere).
- ``auto`` (default): on a loopback bind, the local admin until the first key is ever
  created in the store, so ``make run`` needs no ceremony; from then on keys are required
  for good. Revoking or erasing every key never reopens the server.

Keys are checked against a short cache, so authentication costs no database round trip on
the hot path; a revocation is seen at once (see ``openclone.store.keys``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.exc import InterfaceError, OperationalError

from openclone.config import is_loopback
from openclone.errors import AuthenticationError, PermissionDenied
from openclone.gateway.state import Gateway, GatewayDep
from openclone.store.accounts import LOCAL, Principal
from openclone.store.keys import authenticate, cached_principal, keys_ever_created

__all__ = [
    "AdminDep",
    "CallerDep",
    "admin",
    "audit_actor",
    "caller",
    "is_loopback",
    "optional_caller",
]

_KEYS_TTL = 2.0  # PostgreSQL: seconds between "was a key ever created?" checks


async def _keyless(gw: Gateway) -> bool:
    """Whether a call without a key is the local admin."""
    mode = gw.settings.auth
    if mode == "none":
        return True
    if mode == "keys" or gw.keys_exist or not is_loopback(gw.settings.host):
        return False
    if gw.store is None:
        return True  # a bare model server on loopback: no store, so no keys can exist
    version = gw.store.keys_version()
    if version is not None and version == gw.keys_seen:
        return True  # no key was created anywhere since we looked: no query
    if version is None and gw.keys_checked > time.monotonic():
        return True
    try:
        gw.keys_exist = await asyncio.to_thread(keys_ever_created, gw.store)
    except (OperationalError, InterfaceError):
        if gw.keys_checked == 0.0:
            raise  # never read: refused (503) rather than guessed open
        # Read before: keep that answer through the outage. No key can be created in a
        # database this gateway cannot reach except through another gateway, and a
        # keyless server is loopback-only.
        return not gw.keys_exist
    gw.keys_seen, gw.keys_checked = version, time.monotonic() + _KEYS_TTL
    return not gw.keys_exist


async def caller(request: Request, gw: GatewayDep) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else ""
    if gw.store is not None and token.startswith("oc-"):
        known, found = cached_principal(gw.store, token)
        if not known:
            found = await asyncio.to_thread(authenticate, gw.store, token)
        if found is None:
            raise AuthenticationError("Incorrect API key provided.", code="invalid_api_key")
        who = found
    elif await _keyless(gw):
        who = LOCAL  # keyless loopback; an OpenAI client's dummy key is fine
    else:
        raise AuthenticationError(
            "You didn't provide an API key. Send it as 'Authorization: Bearer oc-...' "
            "(create one with `openclone keys create --tenant NAME`).",
            code="invalid_api_key",
        )
    request.state.caller = who
    return who


async def optional_caller(request: Request, gw: GatewayDep) -> Principal | None:
    """The caller, or None for a call that would be refused (public endpoints)."""
    try:
        return await caller(request, gw)
    except AuthenticationError:
        return None


CallerDep = Annotated[Principal, Depends(caller)]


async def admin(who: CallerDep) -> Principal:
    """The caller, who must hold an admin key (a router's guard: ``Depends(admin)``)."""
    if not who.is_admin:
        raise PermissionDenied("this needs an admin key")
    return who


AdminDep = Annotated[Principal, Depends(admin)]


def audit_actor(who: Principal) -> str:
    """Who did it, as the audit log names an admin: ``key:<key id>``, or ``local-admin``
    (a keyless loopback caller)."""
    return f"key:{who.key_id}" if who.key_id else "local-admin"
