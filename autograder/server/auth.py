"""Tokens and browser sessions.

Every student on the roster (and every instructor) gets a random token, issued once by
``autograder serve-tokens`` into a CSV for the instructor to mail out; the database keeps only
its SHA-256 (tokens are 192 random bits, so a plain hash is enough). The JSON API takes the
token in ``Authorization: Bearer``; a browser logs in once with it and then carries a session
cookie (random id, stored hashed) whose session also holds the CSRF token of its forms.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, select

from autograder.server.db import BrowserSession, Database, Token, utcnow

STUDENT, INSTRUCTOR = "student", "instructor"
SESSION_COOKIE = "needle_session"
LOGIN_CSRF_COOKIE = "needle_login_csrf"
SESSION_HOURS = 12


@dataclass(frozen=True)
class User:
    id: str
    role: str
    csrf: str = ""  # the session's CSRF token (browser sessions only)

    @property
    def instructor(self) -> bool:
        return self.role == INSTRUCTOR


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(24)


def same(a: str, b: str) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(a.encode(), b.encode())


def issue_tokens(
    db: Database, people: Iterable[tuple[str, str]], replace: bool = False
) -> list[tuple[str, str, str]]:
    """A new token for each (id, role) that has none (``replace``: for everyone, revoking the
    old ones). Returns (id, role, token) of the tokens issued now."""
    issued = []
    with db.session() as session:
        for user_id, role in people:
            current = session.scalars(
                select(Token).where(Token.user_id == user_id, Token.revoked.is_(False))
            ).all()
            if current and not replace:
                continue
            for token in current:
                token.revoked = True
            secret = new_secret()
            session.add(Token(user_id=user_id, role=role, token_hash=digest(secret)))
            issued.append((user_id, role, secret))
    return issued


def write_token_csv(path: Path, issued: list[tuple[str, str, str]]) -> Path:
    """The CSV the instructor mails out: id, role, token (readable by its owner only)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        path.chmod(0o600)
        writer = csv.writer(handle)
        writer.writerow(["id", "role", "token"])
        writer.writerows(issued)
    return path


def user_of_token(db: Database, token: str) -> User | None:
    if not token:
        return None
    with db.session() as session:
        row = session.scalars(
            select(Token).where(Token.token_hash == digest(token), Token.revoked.is_(False))
        ).first()
        return User(row.user_id, row.role) if row else None


def open_session(db: Database, user: User) -> tuple[str, User]:
    """A new browser session of ``user``: (cookie value, the user with its CSRF token)."""
    secret, csrf = new_secret(), new_secret()
    now = utcnow()
    with db.session() as session:
        session.execute(delete(BrowserSession).where(BrowserSession.expires_at < now))
        session.add(
            BrowserSession(
                id_hash=digest(secret),
                user_id=user.id,
                role=user.role,
                csrf=csrf,
                expires_at=now + dt.timedelta(hours=SESSION_HOURS),
            )
        )
    return secret, User(user.id, user.role, csrf)


def user_of_session(db: Database, cookie: str | None) -> User | None:
    if not cookie:
        return None
    with db.session() as session:
        row = session.get(BrowserSession, digest(cookie))
        if row is None or row.expires_at < utcnow():
            return None
        return User(row.user_id, row.role, row.csrf)


def close_session(db: Database, cookie: str | None) -> None:
    if cookie:
        with db.session() as session:
            session.execute(delete(BrowserSession).where(BrowserSession.id_hash == digest(cookie)))
