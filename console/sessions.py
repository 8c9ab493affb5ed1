"""Server-side sessions: the browser holds only a random id in an HttpOnly cookie.

The tokens stay here, never in the browser. In memory for now (one console process); a shared
store takes its place when the console runs as several processes.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

COOKIE = "passerelle_session"
MAX_SESSIONS = 10_000


@dataclass
class Session:
    id: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    lang: str = "fr"
    # Signed in: who, and the tokens (the access token is sent to the services on their behalf).
    user: dict[str, Any] | None = None
    access_token: str | None = None
    id_token: str | None = None
    expires_at: float = 0.0
    # A sign-in under way: state -> (nonce, code verifier, the page asked for).
    pending: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    # A form sent after the sign-in had expired, given back to its page once signed in again.
    draft: dict[str, str] = field(default_factory=dict)
    last_seen: float = field(default_factory=time.time)

    @property
    def signed_in(self) -> bool:
        return self.user is not None and self.access_token is not None and time.time() < self.expires_at

    @property
    def roles(self) -> list[str]:
        return list((self.user or {}).get("roles") or [])


class SessionStore:
    def __init__(self, idle_seconds: int):
        self.idle_seconds = idle_seconds
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        with self._lock:
            found = self._sessions.get(session_id)
            if found is None:
                return None
            now = time.time()
            if now - found.last_seen > self.idle_seconds:
                del self._sessions[session_id]
                return None
            found.last_seen = now
            return found

    def new(self, lang: str = "fr") -> Session:
        with self._lock:
            if len(self._sessions) >= MAX_SESSIONS:
                self._evict()
            found = Session(id=secrets.token_urlsafe(32), lang=lang)
            self._sessions[found.id] = found
            return found

    def renew(self, old: Session) -> Session:
        """The same session under a new id (at sign-in: an id known before it is worth nothing after)."""
        with self._lock:
            self._sessions.pop(old.id, None)
            old.id = secrets.token_urlsafe(32)
            old.csrf = secrets.token_urlsafe(32)
            self._sessions[old.id] = old
            return old

    def drop(self, session: Session) -> None:
        with self._lock:
            self._sessions.pop(session.id, None)

    def _evict(self) -> None:
        now = time.time()
        for key in [k for k, s in self._sessions.items() if now - s.last_seen > self.idle_seconds]:
            del self._sessions[key]
        if len(self._sessions) >= MAX_SESSIONS:  # still full: the least recently seen go
            for key, _ in sorted(self._sessions.items(), key=lambda kv: kv[1].last_seen)[: MAX_SESSIONS // 10]:
                del self._sessions[key]
