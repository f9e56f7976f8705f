"""One project's ECS servers in the emulator, and the public keys each has accepted over time.

A ``Server`` is what ``GET /v1/{project_id}/cloudservers/detail`` lists and what the KPS
binding tasks act on: its name, whether it runs (``ACTIVE``) or is stopped (``SHUTOFF``),
whether its image is public (``gold``) or private, whether its SSH port is reachable, and
the key pair bound to it (``key_name``, with the public key it holds). Servers are made
and removed through the admin path only; the binding tasks change ``key_name``.

Every change of the key a server accepts is one ``KeyEvent`` in that server's timeline,
stamped with the moment it took effect: the first at creation (with or without a key), one
per successful reset, replace or unbind. A test reads the timeline to check that a server
never had a moment without a managed key. Only public keys are held here: a private key
given to authorise a replace is checked by the caller and never stored.

Servers live in memory only (never in the ``--data`` file); ``reset`` forgets them.

May import: the standard library only.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field, replace

RUNNING, STOPPED = "ACTIVE", "SHUTOFF"
PUBLIC_IMAGE, PRIVATE_IMAGE = "gold", "private"
DEFAULT_SSH_PORT = 22


class FleetProblem(ValueError):
    """A server the admin path cannot make or change (the message says why)."""


@dataclass(frozen=True, slots=True)
class KeyEvent:
    """From ``at_ms`` on, the server accepts ``public_key`` (None: no key, password login)."""

    at_ms: int
    key_name: str | None
    public_key: str | None
    fingerprint: str | None
    cause: str  # "created" | "RESET" | "REPLACE" | "UNBIND"


@dataclass(frozen=True, slots=True)
class Server:
    id: str
    name: str
    status: str  # RUNNING | STOPPED
    image_type: str  # PUBLIC_IMAGE | PRIVATE_IMAGE
    image_id: str
    created_ms: int
    updated_ms: int
    ssh_port_open: bool = True
    ssh_port: int = DEFAULT_SSH_PORT
    key_name: str | None = None
    public_key: str | None = None  # the key it accepts now (None with key_name None)
    fingerprint: str | None = None
    password_login: bool = True

    @property
    def running(self) -> bool:
        return self.status == RUNNING


@dataclass(slots=True)
class _Entry:
    server: Server
    timeline: list[KeyEvent] = field(default_factory=list)


class Fleet:
    """One project's servers, in creation order; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}

    def add(self, *, name: str, status: str, image_type: str, ssh_port_open: bool,
            ssh_port: int, at_ms: int, key_name: str | None = None,
            public_key: str | None = None, fingerprint: str | None = None) -> Server:
        if status not in (RUNNING, STOPPED):
            raise FleetProblem("status must be 'running' or 'stopped'")
        if image_type not in (PUBLIC_IMAGE, PRIVATE_IMAGE):
            raise FleetProblem("image must be 'public' or 'private'")
        if not 1 <= ssh_port <= 65535:
            raise FleetProblem("ssh_port must be a port number from 1 to 65535")
        server = Server(id=str(uuid.uuid4()), name=name, status=status, image_type=image_type,
                        image_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"image:{image_type}")),
                        created_ms=at_ms, updated_ms=at_ms, ssh_port_open=ssh_port_open,
                        ssh_port=ssh_port, key_name=key_name, public_key=public_key,
                        fingerprint=fingerprint, password_login=key_name is None)
        event = KeyEvent(at_ms=at_ms, key_name=key_name, public_key=public_key,
                         fingerprint=fingerprint, cause="created")
        with self._lock:
            self._entries[server.id] = _Entry(server, [event])
        return server

    def get(self, server_id: str) -> Server | None:
        with self._lock:
            entry = self._entries.get(server_id)
            return None if entry is None else entry.server

    def all(self) -> list[Server]:
        """Newest first, as ECS lists them (ties by id, so pages are stable)."""
        with self._lock:
            servers = [e.server for e in self._entries.values()]
        return sorted(servers, key=lambda s: (-s.created_ms, s.id))

    def remove(self, server_id: str) -> bool:
        with self._lock:
            return self._entries.pop(server_id, None) is not None

    def change(self, server_id: str, *, at_ms: int, status: str | None = None,
               ssh_port_open: bool | None = None) -> Server:
        """Start or stop a server, open or close its SSH port (the admin path)."""
        if status is not None and status not in (RUNNING, STOPPED):
            raise FleetProblem("status must be 'running' or 'stopped'")
        with self._lock:
            entry = self._entries.get(server_id)
            if entry is None:
                raise FleetProblem(f"no server {server_id} in this project")
            s = entry.server
            entry.server = replace(
                s, status=s.status if status is None else status,
                ssh_port_open=s.ssh_port_open if ssh_port_open is None else ssh_port_open,
                updated_ms=at_ms)
            return entry.server

    def accept(self, server_id: str, *, at_ms: int, cause: str, key_name: str | None,
               public_key: str | None, fingerprint: str | None,
               password_login: bool | None = None) -> bool:
        """The server accepts this key from ``at_ms`` on (None: unbound); False when the
        server is gone."""
        with self._lock:
            entry = self._entries.get(server_id)
            if entry is None:
                return False
            s = entry.server
            entry.server = replace(
                s, key_name=key_name, public_key=public_key, fingerprint=fingerprint,
                updated_ms=at_ms,
                password_login=s.password_login if password_login is None else password_login)
            entry.timeline.append(KeyEvent(at_ms=at_ms, key_name=key_name,
                                           public_key=public_key, fingerprint=fingerprint,
                                           cause=cause))
            return True

    def timeline(self, server_id: str) -> list[KeyEvent] | None:
        with self._lock:
            entry = self._entries.get(server_id)
            return None if entry is None else list(entry.timeline)

    def count(self) -> int:
        with self._lock:
            return len(self._entries)
