"""HTTP basic authentication against bcrypt hashes, as Prometheus's exporter-toolkit does it.

bcrypt is slow on purpose, so a verified password is remembered (as an HMAC
under a per-process key, never in clear) and later checks cost a hash lookup.
Failures are never remembered. Checks run one at a time in a worker thread,
off the event loop, and concurrent checks of the same credentials share one
bcrypt run. An unknown user is checked against a fixed hash, so the time taken
does not tell which users exist.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import hashlib
import hmac
import os
from collections import OrderedDict
from collections.abc import Mapping

import bcrypt

# bcrypt of a random password nobody knows, at cost 10 like the users' hashes.
_DECOY_HASH = b"$2b$10$xcTg9GR5YWW3wIAC7DR.LeiYcNUFrTLk.ZvUnSiWenBBA8RaIBPcq"
_REMEMBERED = 1024


class BasicAuth:
    """Verifies ``Authorization: Basic`` headers against a user -> bcrypt hash map."""

    def __init__(self, users: Mapping[str, bytes]) -> None:
        self._users = dict(users)
        self._key = os.urandom(32)
        self._verified: OrderedDict[bytes, None] = OrderedDict()
        self._pending: dict[bytes, asyncio.Future[bool]] = {}
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="bcrypt")

    async def check(self, header: str | None) -> bool:
        """Whether ``header`` carries a known user's right password."""
        credentials = _parse(header)
        if credentials is None:
            return False
        user, password = credentials
        digest = hmac.new(self._key, user.encode() + b"\0" + password, hashlib.sha256).digest()
        if digest in self._verified:
            self._verified.move_to_end(digest)
            return True
        pending = self._pending.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        future = asyncio.get_running_loop().run_in_executor(
            self._executor, self._verify, user, password
        )
        self._pending[digest] = future
        try:
            ok = await asyncio.shield(future)
        finally:
            del self._pending[digest]
        if ok:
            self._verified[digest] = None
            if len(self._verified) > _REMEMBERED:
                self._verified.popitem(last=False)
        return ok

    def _verify(self, user: str, password: bytes) -> bool:
        hashed = self._users.get(user)
        matches = bcrypt.checkpw(password, hashed or _DECOY_HASH)
        return hashed is not None and matches

    def close(self) -> None:
        """Stop the worker thread."""
        self._executor.shutdown(wait=False, cancel_futures=True)


def _parse(header: str | None) -> tuple[str, bytes] | None:
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None
