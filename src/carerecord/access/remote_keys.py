"""Public keys fetched from other parties' JWKS URLs: trusted identity providers and clients
that register a ``jwks_uri``.

Only URLs on the settings' ``jwks_allow_list`` are ever fetched (exact match or a listed
prefix ending in "/"), so a token or assertion cannot make the server send requests to
addresses of the attacker's choosing (a ``jku`` header is a classic SSRF and key-substitution
vector). Key sets are cached for :data:`TTL` seconds and refetched early once when a ``kid``
is not found, for providers that rotate keys.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from typing import Any

from joserfc.jwk import KeySet

TTL = 300.0
TIMEOUT = 5.0
MAX_BYTES = 256 * 1024


class RemoteKeyError(Exception):
    """A JWKS URL that is not allowed, cannot be fetched, or is not a key set."""


class RemoteKeys:
    """A cache of allow-listed JWKS documents."""

    def __init__(self, allow_list: list[str]) -> None:
        self.allow_list = tuple(allow_list)
        self._cache: dict[str, tuple[float, KeySet]] = {}
        self._lock = threading.Lock()

    def allowed(self, url: str) -> bool:
        return any(url == a or (a.endswith("/") and url.startswith(a)) for a in self.allow_list)

    def keyset(self, url: str, *, kid: str | None = None) -> KeySet:
        """The key set at ``url``, from the cache when fresh and holding ``kid``."""
        if not self.allowed(url):
            raise RemoteKeyError(f"{url} is not on the JWKS allow-list")
        with self._lock:
            cached = self._cache.get(url)
        if cached and cached[0] > time.monotonic() and (kid is None or _has(cached[1], kid)):
            return cached[1]
        keys = KeySet.import_key_set(_fetch(url))  # type: ignore[arg-type]
        with self._lock:
            self._cache[url] = (time.monotonic() + TTL, keys)
        return keys


def _has(keys: KeySet, kid: str) -> bool:
    return any(k.kid == kid for k in keys.keys)


def _fetch(url: str) -> dict[str, Any]:
    if not url.startswith(("https://", "http://")):
        raise RemoteKeyError(f"{url} is not an http(s) URL")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310 - allow-listed
            body = response.read(MAX_BYTES + 1)
    except OSError as e:
        raise RemoteKeyError(f"cannot fetch {url}: {e}") from e
    if len(body) > MAX_BYTES:
        raise RemoteKeyError(f"{url} is too large for a key set")
    try:
        doc = json.loads(body)
    except ValueError as e:
        raise RemoteKeyError(f"{url} is not JSON") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise RemoteKeyError(f"{url} is not a JSON Web Key Set")
    return doc
