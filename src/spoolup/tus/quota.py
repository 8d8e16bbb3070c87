"""Caps on unfinished tus uploads: in all, and per client.

A client is named by its address: the connection's, or the ``X-Forwarded-For`` one
that uvicorn takes from a trusted proxy (``FORWARDED_ALLOW_IPS``, loopback by
default). IPv6 addresses count per /64 network, the block one machine usually holds
(a link-local one, fe80::/64 on every link, on its own).
An authentication layer in front that knows who is asking may name the client
instead, in ``scope["spoolup.client"]`` (:data:`CLIENT`: a user name, a token it
checked; only a hash of it is kept). A bearer token the app sees is never taken as a
name by itself: nothing checked it (any client could send a new one per upload to
dodge its cap), and one token shared by every client would make them all one. Each upload
records its client, so the counts survive a restart: they are taken from one listing
on the first creation and at every expiry sweep, and kept up to date in between.
"""

from __future__ import annotations

import hashlib
import ipaddress
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from spoolup.tus.protocol import TusError

__all__ = ["CLIENT", "OpenUploads", "client_key"]

CLIENT = "spoolup.client"
"""Key of the ASGI scope where an authentication layer names the client it checked."""


def client_key(scope: Mapping[str, Any]) -> str:
    """Who is asking: ``named:<hash>``, ``ip:<address or /64 network>``, or ``""``."""
    named = scope.get(CLIENT)
    if isinstance(named, str) and named:
        return "named:" + hashlib.sha256(named.encode()).hexdigest()[:32]
    client = scope.get("client")
    if not client:
        return ""
    host = str(client[0])
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "ip:" + host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return "ip:" + str(address.ipv4_mapped)
        if address.is_link_local:  # fe80::/64 is every link's: no machine's own block
            return "ip:" + str(address)
        return "ip:" + str(ipaddress.ip_network(f"{address}/64", strict=False))
    return "ip:" + str(address)


class OpenUploads:
    """The unfinished uploads this server knows of, by client, with the two caps.

    Safe to share between the event loop and the sweep's worker thread. A listing is
    counted with :meth:`listing` then :meth:`recount`: the uploads opened or closed
    while it was taken are kept as they are now, not as the listing saw them, and so
    are those opened and not yet :meth:`recorded` (a listing cannot see them).
    """

    def __init__(self, max_open: int, max_per_client: int | None) -> None:
        self.max_open = max_open
        self.max_per_client = max_per_client
        self.counted = False  # whether a listing has been counted yet
        self._client_of: dict[str, str] = {}
        self._per_client: Counter[str] = Counter()
        self._mutex = threading.Lock()
        self._listings = 0  # listings under way
        self._since: dict[str, str | None] = {}  # opened (client) or closed (None) meanwhile
        self._unrecorded: dict[str, str] = {}  # opened, not yet in storage

    def __len__(self) -> int:
        return len(self._client_of)

    def listing(self) -> None:
        """A listing of the uploads begins: what changes from now on outlives it."""
        with self._mutex:
            self._listings += 1

    def abandon(self) -> None:
        """A listing begun with :meth:`listing` failed: nothing to count."""
        with self._mutex:
            self._listings = max(0, self._listings - 1)
            if not self._listings:
                self._since = {}

    def recount(self, uploads: Iterable[tuple[str, str | None]]) -> None:
        """Start again from the ``(upload id, client)`` pairs of a listing begun with
        :meth:`listing`; a ``None`` client keeps the one known."""
        with self._mutex:
            client_of = {
                upload_id: self._client_of.get(upload_id, "") if client is None else client
                for upload_id, client in uploads
            }
            for upload_id, client in self._since.items():
                if client is None:
                    client_of.pop(upload_id, None)
                else:
                    client_of[upload_id] = client
            client_of.update(self._unrecorded)
            self._listings = max(0, self._listings - 1)
            if not self._listings:
                self._since = {}
            self._client_of = client_of
            self._per_client = Counter(client_of.values())
            self.counted = True

    def admit(self, client: str) -> None:
        """Raise a 429 :class:`TusError` if ``client`` may not open one more upload."""
        if len(self._client_of) >= self.max_open:
            msg = (
                f"too many unfinished uploads ({self.max_open}): finish or delete "
                "some, or wait until they expire"
            )
            raise TusError(msg, status=429)
        cap = self.max_per_client
        if client and cap is not None and self._per_client[client] >= cap:
            msg = (
                f"too many unfinished uploads from this client ({cap}): "
                "finish or delete some, or wait until they expire"
            )
            raise TusError(msg, status=429)

    def opened(self, upload_id: str, client: str) -> None:
        """Count a new upload, before it is recorded in storage."""
        with self._mutex:
            if self._listings:
                self._since[upload_id] = client
            self._unrecorded[upload_id] = client
            if upload_id not in self._client_of:
                self._client_of[upload_id] = client
                self._per_client[client] += 1

    def recorded(self, upload_id: str) -> None:
        """An upload :meth:`opened` is in storage now: listings see it from now on."""
        with self._mutex:
            client = self._unrecorded.pop(upload_id, None)
            if client is not None and self._listings:
                self._since[upload_id] = client  # a listing under way may have missed it

    def closed(self, upload_id: str) -> None:
        """Stop counting an upload (finished or removed; a second call does nothing)."""
        with self._mutex:
            self._unrecorded.pop(upload_id, None)
            if self._listings:
                self._since[upload_id] = None
            client = self._client_of.pop(upload_id, None)
            if client is not None:
                self._per_client[client] -= 1
                if self._per_client[client] <= 0:
                    del self._per_client[client]
