"""pytest fixtures for the real servers on loopback (loaded by ``tests/conftest.py``).

Missing server software: with the environment variable ``CI`` set (non-empty) the fixture *fails* the
test, so a CI machine without Dovecot or PostgreSQL can never pass by skipping; elsewhere it *skips*, and
the message names the Debian package to install.

Session-scoped servers (``dovecot``, ``dovecot_nonroot``, ``dovecot_tls``, ``postgres``) are started
lazily, the first time a test asks for them, and shared; per-test isolation comes from a fresh user
(``mailbox``) or a fresh database (``postgres_url``). Tests that stop, restart or reconfigure a server use
the factories (``dovecot_factory``, ``smtp_factory``), which give them a private instance.

Database backends: ``--db-backend`` (``sqlite``, ``postgresql`` or ``both``; else the environment variable
``FOLLOWUPD_TEST_DB``; default ``both``) selects the backends the shared fixtures ``database_url`` /
``database_url_factory`` / ``db`` are parametrized over (test ids ``[sqlite]`` / ``[postgresql]``). A test
that is inherently one backend's says so with ``@pytest.mark.db_backend("sqlite")`` and then runs on that
backend whatever the selection. The PostgreSQL variants carry the ``postgres`` mark (``-m "not postgres"``).
"""

from __future__ import annotations

import os
import queue
import re
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator
from itertools import count
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest
import trustme

from tests.servers.dovecot import DOVECOT_BINARY, DOVECOT_PACKAGE, Dovecot, dovecot_available
from tests.servers.postgres import POSTGRES_PACKAGE, Postgres, find_bindir
from tests.servers.smtp import SmtpServer

if TYPE_CHECKING:
    from followupd.store.db import Database

SMTP_CREDENTIALS = ("sender@example.org", "smtp-secret")
"""User name and password of ``smtp_tls_server``."""

BACKENDS = ("sqlite", "postgresql")
"""The database backends the suite runs on."""
BACKEND_ENV = "FOLLOWUPD_TEST_DB"
"""Environment variable selecting the backends when ``--db-backend`` is not given."""
BACKEND_FIXTURE = "db_backend"
"""The fixture (parametrized by :func:`pytest_generate_tests`) naming the backend of a test variant."""

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


# ------------------------------------------------------------------------------------ database backends


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db-backend",
        action="store",
        default=None,
        choices=(*BACKENDS, "both"),
        help=f"database backend(s) for the backend-agnostic tests (default: ${BACKEND_ENV}, else both)",
    )


def pytest_configure(config: pytest.Config) -> None:
    selected_backends(config)  # a bad FOLLOWUPD_TEST_DB is a usage error before anything runs


def selected_backends(config: pytest.Config) -> tuple[str, ...]:
    """The backends chosen by ``--db-backend``, else ``$FOLLOWUPD_TEST_DB``, else both."""
    option = config.getoption("--db-backend", default=None)
    value = option if option is not None else os.environ.get(BACKEND_ENV, "").strip().lower() or "both"
    if value == "both":
        return BACKENDS
    if value not in BACKENDS:
        raise pytest.UsageError(f"{BACKEND_ENV}={value!r}: expected one of {', '.join(BACKENDS)} or both")
    return (value,)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each test using ``db_backend`` (through ``db``, ``database_url``) on every selected backend."""
    if BACKEND_FIXTURE not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("db_backend")
    if marker is not None:
        unknown = set(marker.args) - set(BACKENDS)
        if not marker.args or unknown:
            where = metafunc.definition.nodeid
            raise pytest.UsageError(f"{where}: db_backend{marker.args!r}: expected backends of {BACKENDS}")
        backends: tuple[str, ...] = tuple(marker.args)
    else:
        backends = selected_backends(metafunc.config)
    params = [
        pytest.param(name, id=name, marks=[pytest.mark.postgres] if name == "postgresql" else [])
        for name in backends
    ]
    metafunc.parametrize(BACKEND_FIXTURE, params, scope="function")


@pytest.fixture
def db_backend(request: pytest.FixtureRequest) -> str:
    """``"sqlite"`` or ``"postgresql"``: the backend of this test variant (set by pytest_generate_tests)."""
    backend: str = getattr(request, "param", "sqlite")
    return backend


def _head_database(url: str) -> None:
    from followupd.store.db import Database

    database = Database(url)
    try:
        database.upgrade()
    finally:
        database.dispose()


def _copy_private(source: Path, target: Path) -> None:
    """Copy a closed SQLite database file to a new 0600 file (as followupd itself creates them)."""
    fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with open(source, "rb") as src, open(fd, "wb") as dst:
        shutil.copyfileobj(src, dst)


def _pg_name(*parts: str) -> str:
    slug = _slug("-".join(parts), 45).replace("-", "_")
    return f"t{next(_db_serial)}_{slug}"


class DatabaseTemplates:
    """Template databases, built once per session and backend, that tests get private copies of.

    ``base`` is an empty database at the head migration. :meth:`get` builds a populated template the first
    time a key is asked for on a backend (``build(url)`` fills a copy of ``base`` and must dispose of its
    engines) and returns its reference for ``database_url_factory(name, template=...)``. Copies cost ~50 ms
    on PostgreSQL (``CREATE DATABASE ... TEMPLATE``) and a file copy on SQLite.

    PostgreSQL copies are dropped in batches (:meth:`discard`): a CREATE DATABASE right after a DROP DATABASE
    waits ~240 ms for the drop's clean-up, every time; after a batch of drops only the first one does. Copies
    of ``base`` are made a few tests ahead by a background thread (:meth:`take_copy`), so the server copies
    while the tests run.
    """

    DROP_BATCH = 40

    def __init__(self, directory: Path, request: pytest.FixtureRequest) -> None:
        self._directory = directory
        self._request = request
        self._built: dict[tuple[str, str], str] = {}
        self._discarded: list[str] = []
        self._ahead: _Prefetcher | None = None

    @property
    def postgres(self) -> Postgres:
        """The shared cluster (started on first use; fails or skips like ``postgres`` when not installed)."""
        cluster: Postgres = self._request.getfixturevalue("postgres")
        return cluster

    def base(self, backend: str) -> str:
        """The reference of the empty head-migration template of ``backend``."""
        return self.get("base", backend, None)

    def get(self, key: str, backend: str, build: Callable[[str], None] | None) -> str:
        """The reference (SQLite file path or PostgreSQL database name) of template ``key`` on ``backend``."""
        if (key, backend) in self._built:
            return self._built[(key, backend)]
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}")
        if backend == "sqlite":
            path = self._directory / f"{_slug(key, 40)}.sqlite"
            if build is None:
                url = f"sqlite:///{path}"
                _head_database(url)
            else:
                _copy_private(Path(self.base(backend)), path)
                build(f"sqlite:///{path}")
            # The last connection checkpointed the WAL: the file alone is the whole database.
            for suffix in ("-wal", "-shm"):
                if path.with_name(path.name + suffix).exists():
                    raise RuntimeError(f"template {key}: {path}{suffix} is left; dispose of every engine")
            reference = str(path)
        else:
            reference = _pg_name("template", key)
            if build is None:
                _head_database(self.postgres.create_database(reference))
            else:
                build(self.postgres.create_database(reference, template=self.base(backend)))
        self._built[(key, backend)] = reference
        return reference

    def take_copy(self) -> str:
        """The name of a new PostgreSQL copy of ``base`` (made ahead of time by a background thread)."""
        if self._ahead is None:
            self._ahead = _Prefetcher(self.postgres, self.base("postgresql"))
            self._request.addfinalizer(self._ahead.stop)
        return self._ahead.take()

    def discard(self, database: str) -> None:
        """Drop a PostgreSQL copy soon: with the next batch (connections still open to it are ended then)."""
        self._discarded.append(database)
        if len(self._discarded) >= self.DROP_BATCH:
            self.drop_discarded()

    def drop_discarded(self) -> None:
        postgres = self.postgres
        while self._discarded:
            postgres.drop_database(self._discarded.pop())


@pytest.fixture(scope="session")
def database_templates(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> DatabaseTemplates:
    """The session's :class:`DatabaseTemplates`."""
    return DatabaseTemplates(tmp_path_factory.mktemp("db-templates"), request)


class _Prefetcher:
    """A thread that keeps ``ahead`` copies of a PostgreSQL template ready in a queue."""

    def __init__(self, postgres: Postgres, template: str, ahead: int = 3) -> None:
        self._postgres = postgres
        self._template = template
        self._ready: queue.Queue[str | BaseException] = queue.Queue(maxsize=ahead)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="postgres-copies", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            name = _pg_name("copy")
            item: str | BaseException = name
            try:
                self._postgres.create_database(name, template=self._template)
            except BaseException as exc:  # handed to the test that takes it
                item = exc
            while not self._stopping.is_set():
                try:
                    self._ready.put(item, timeout=0.2)
                    break
                except queue.Full:
                    continue
            if isinstance(item, BaseException):
                return

    def take(self) -> str:
        item = self._ready.get(timeout=60)
        if isinstance(item, BaseException):
            raise item
        return item

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=30)


class DatabaseUrlFactory:
    """``make(name)`` / ``make(name, template=ref)``: URLs of new databases on one test's backend."""

    def __init__(self, backend: str, directory: Path, templates: DatabaseTemplates, test_name: str) -> None:
        self.backend = backend
        self._directory = directory
        self._templates = templates
        self._test_name = test_name
        self._created: list[str] = []

    def __call__(self, name: str, *, template: str | None = None) -> str:
        """A new database at the head migration (or a copy of ``template`` from ``database_templates``)."""
        if self.backend == "sqlite":
            source = template if template is not None else self._templates.base(self.backend)
            path = self._directory / f"{name}.sqlite"
            _copy_private(Path(source), path)
            return f"sqlite:///{path}"
        if template is None:
            database = self._templates.take_copy()
        else:
            database = _pg_name(self._test_name, name)
            self._templates.postgres.create_database(database, template=template)
        self._created.append(database)
        return self._templates.postgres.url(database)

    def discard_all(self) -> None:
        """Hand this test's PostgreSQL databases to :meth:`DatabaseTemplates.discard` (batched drops)."""
        for database in self._created:
            self._templates.discard(database)
        self._created.clear()


@pytest.fixture
def database_url_factory(
    db_backend: str, tmp_path: Path, database_templates: DatabaseTemplates, request: pytest.FixtureRequest
) -> Iterator[DatabaseUrlFactory]:
    """``make(name)``: the URL of a new database at the head migration on this test's backend.

    SQLite: ``tmp_path / f"{name}.sqlite"`` (0600). PostgreSQL: a fresh database on the shared cluster, copied
    from a migrated template and dropped WITH (FORCE) some tests later (dispose of your engines at the end of
    the test). For an empty, un-migrated database use ``empty_database_url`` or ``postgres_url``.
    """
    factory = DatabaseUrlFactory(db_backend, tmp_path, database_templates, request.node.name)
    yield factory
    factory.discard_all()


@pytest.fixture
def database_url(database_url_factory: DatabaseUrlFactory) -> str:
    """A fresh database at the head migration, on each selected backend (``[sqlite]`` / ``[postgresql]``)."""
    return database_url_factory("followupd")


@pytest.fixture
def empty_database_url(db_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A new, empty (un-migrated) database on each selected backend, for tests of migrations and first runs.

    SQLite: ``tmp_path / "data" / "followupd.sqlite"``, in a directory that does not exist yet (followupd
    creates it 0700 and the file 0600). PostgreSQL: ``postgres_url``.
    """
    if db_backend == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return f"sqlite:///{tmp_path / 'data' / 'followupd.sqlite'}"


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """A :class:`followupd.store.db.Database` on ``database_url``, upgraded to head, disposed afterwards."""
    from followupd.store.db import Database

    database = Database(database_url)
    database.upgrade()
    yield database
    database.dispose()
