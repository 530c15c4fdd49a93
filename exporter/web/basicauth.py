"""HTTP basic authentication against bcrypt hashes, with the verdicts cached.

bcrypt is slow on purpose (tens of milliseconds per check at cost 10); a
Prometheus server sends the same credentials every scrape, so each verdict
is cached under an HMAC of user and password with a key that lives only in
this process: the cache never holds a password or an unsalted hash of one.
Wrong passwords are cached too, so repeating one is cheap for us and a new
guess still costs the guesser a full bcrypt check. An unknown user is
checked against a dummy hash of the same cost, so timing does not tell
which user names exist.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import threading
from collections import OrderedDict
from typing import Mapping, Optional, Tuple

import bcrypt

CACHE_SIZE = 1024


def parse_authorization(header: Optional[str]) -> Optional[Tuple[bytes, bytes]]:
    """(user, password) from ``Authorization: Basic ...``, or None when absent or malformed."""
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    return (user, password) if sep else None


#: bcrypt costs accepted. Each step doubles the time of a check: cost 14 takes about 1 s on
#: a current core, cost 19 half a minute, which is an outage for the first scrape, not security.
MIN_COST, MAX_COST = 4, 14


def is_bcrypt_hash(value: str) -> bool:
    return len(value) == 60 and value[:4] in ("$2a$", "$2b$", "$2y$") and value[4:6].isdigit() and value[6] == "$"


def cost(hashed: str) -> int:
    return int(hashed[4:6])


class BasicAuth:
    def __init__(self, users: Mapping[str, str]):
        self._users = {name.encode("utf-8"): hashed.encode("ascii") for name, hashed in users.items()}
        self._dummy = _dummy_hash(min(self._users.values(), key=lambda h: cost(h.decode())))
        self._key = os.urandom(32)
        self._verdicts: OrderedDict[bytes, bool] = OrderedDict()
        self._lock = threading.Lock()

    def cached(self, authorization: Optional[str]) -> Optional[bool]:
        """The verdict when it costs no bcrypt check (malformed, or seen before); None when it needs one."""
        credentials = parse_authorization(authorization)
        if credentials is None:
            return False
        key = self._cache_key(credentials)
        with self._lock:
            verdict = self._verdicts.get(key)
            if verdict is not None:
                self._verdicts.move_to_end(key)
            return verdict

    def allows(self, authorization: Optional[str]) -> bool:
        verdict = self.cached(authorization)
        if verdict is not None:
            return verdict
        credentials = parse_authorization(authorization)
        if credentials is None:  # cached() has answered False already; this tells mypy
            return False
        verdict = self._verify(*credentials)
        with self._lock:
            self._verdicts[self._cache_key(credentials)] = verdict
            while len(self._verdicts) > CACHE_SIZE:
                self._verdicts.popitem(last=False)
        return verdict

    def _cache_key(self, credentials: Tuple[bytes, bytes]) -> bytes:
        user, password = credentials
        return hmac.new(self._key, user + b"\0" + password, hashlib.sha256).digest()

    def _verify(self, user: bytes, password: bytes) -> bool:
        """One bcrypt check: slow, so never call it on a thread that others wait for."""
        hashed = self._users.get(user)
        try:
            matches = bcrypt.checkpw(password, hashed if hashed is not None else self._dummy)
        except ValueError:  # bcrypt refuses passwords over 72 bytes
            return False
        return matches and hashed is not None


def _dummy_hash(model: bytes) -> bytes:
    """A hash no password matches, as costly to check as ``model``, made without computing one.

    A fresh salt with the model's digest is a well-formed hash of nothing
    anyone knows, so building it costs nothing at load and nothing on a
    request's path.
    """
    return bcrypt.gensalt(rounds=cost(model.decode())) + model[29:]
