"""pytest fixtures for the real servers on loopback (loaded by ``tests/conftest.py``).

Missing server software: with the environment variable ``CI`` set (non-empty) the fixture *fails* the
test, so a CI machine without Dovecot or PostgreSQL can never pass by skipping; elsewhere it *skips*, and
the message names the Debian package to install.

Session-scoped servers (``dovecot``, ``dovecot_nonroot``, ``dovecot_tls``, ``postgres``) are started
lazily, the first time a test asks for them, and shared; per-test isolation comes from a fresh user
(``mailbox``) or a fresh database (``postgres_url``). Tests that stop, restart or reconfigure a server use
the factories (``dovecot_factory``, ``smtp_factory``), which give them a private instance.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Iterator
from itertools import count
from typing import Any, NamedTuple

import pytest
import trustme

from tests.servers.dovecot import DOVECOT_BINARY, DOVECOT_PACKAGE, Dovecot, dovecot_available
from tests.servers.postgres import POSTGRES_PACKAGE, Postgres, find_bindir
from tests.servers.smtp import SmtpServer

SMTP_CREDENTIALS = ("sender@example.org", "smtp-secret")
"""User name and password of ``smtp_tls_server``."""

_user_serial = count(1)
_db_serial = count(1)


class Mailbox(NamedTuple):
    """A fresh IMAP user on the shared Dovecot; unpacks as ``(dovecot, user, password)``."""

    dovecot: Dovecot
    user: str
    password: str


def require_software(available: bool, what: str, package: str) -> None:
    """Skip (developer machine) or fail (CI set) when a server's software is not installed."""
    if available:
        return
    message = f"{what} is not installed: apt-get install {package}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set, so a missing server fails instead of skipping)", pytrace=False)
    pytest.skip(message)


def _require_dovecot() -> None:
    require_software(dovecot_available(), f"Dovecot ({DOVECOT_BINARY})", DOVECOT_PACKAGE)


def _require_postgres() -> None:
    require_software(find_bindir() is not None, "PostgreSQL (initdb, pg_ctl)", POSTGRES_PACKAGE)


def _slug(text: str, limit: int = 24) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit] or "t"


# --------------------------------------------------------------------------------------------------- TLS


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    """A throw-away certificate authority; servers get certificates for 127.0.0.1 and localhost from it."""
    return trustme.CA()


# ----------------------------------------------------------------------------------------------- Dovecot


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """The shared Dovecot (root variant when the tests run as root, non-root variant otherwise)."""
    _require_dovecot()
    with Dovecot() as server:
        yield server


@pytest.fixture(scope="session")
def dovecot_nonroot() -> Iterator[Dovecot]:
    """A Dovecot in the non-root configuration; as root it runs entirely as ``nobody:nogroup``."""
    _require_dovecot()
    with Dovecot(run_as="nobody" if os.geteuid() == 0 else None) as server:
        yield server


@pytest.fixture(scope="session")
def dovecot_tls(tls_ca: trustme.CA) -> Iterator[Dovecot]:
    """A shared Dovecot with ``ssl = required``: implicit TLS on ``imaps_port``, STARTTLS on ``port``."""
    _require_dovecot()
    with Dovecot(tls=tls_ca) as server:
        yield server


@pytest.fixture
def mailbox(dovecot: Dovecot, request: pytest.FixtureRequest) -> Mailbox:
    """A new user on the shared Dovecot for this test: ``dovecot, user, password = mailbox``."""
    if not dovecot.running:  # a test stopped the shared server: bring it back for the next one
        dovecot.start()
    user = f"{_slug(request.node.name)}-{next(_user_serial)}@example.org"
    password = secrets.token_urlsafe(12)
    dovecot.add_user(user, password)
    return Mailbox(dovecot, user, password)


@pytest.fixture
def dovecot_factory() -> Iterator[Callable[..., Dovecot]]:
    """Start private Dovecot instances (``Dovecot(**kwargs)``), closed when the test ends."""
    _require_dovecot()
    servers: list[Dovecot] = []

    def make(**kwargs: Any) -> Dovecot:
        server = Dovecot(**kwargs)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.close()


# -------------------------------------------------------------------------------------------------- SMTP


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A plain SMTP server (no TLS, no AUTH) in ``accept`` mode; change it with ``set_mode``."""
    with SmtpServer() as server:
        yield server


@pytest.fixture
def smtp_tls_server(tls_ca: trustme.CA) -> Iterator[SmtpServer]:
    """STARTTLS offered and required, AUTH required with :data:`SMTP_CREDENTIALS`, CA ``tls_ca``."""
    with SmtpServer(tls="starttls_required", ca=tls_ca, auth=SMTP_CREDENTIALS) as server:
        yield server


@pytest.fixture
def smtp_factory(tls_ca: trustme.CA) -> Iterator[Callable[..., SmtpServer]]:
    """Start SMTP servers with any options (``SmtpServer(**kwargs)``, ``ca`` defaults to ``tls_ca``)."""
    servers: list[SmtpServer] = []

    def make(**kwargs: Any) -> SmtpServer:
        kwargs.setdefault("ca", tls_ca)
        server = SmtpServer(**kwargs)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.stop()


# -------------------------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """The shared throw-away PostgreSQL cluster."""
    _require_postgres()
    with Postgres() as cluster:
        yield cluster


@pytest.fixture
def postgres_url(postgres: Postgres, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database for this test, as a SQLAlchemy URL (``postgresql+psycopg://...``).

    The database is dropped WITH (FORCE) afterwards; dispose of your engines first, or psycopg warns about
    connections deleted while open.
    """
    name = f"t{next(_db_serial)}_{_slug(request.node.name, 40).replace('-', '_')}"
    url = postgres.create_database(name)
    yield url
    postgres.drop_database(name)
