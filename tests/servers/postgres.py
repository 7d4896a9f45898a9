"""A throw-away PostgreSQL cluster on 127.0.0.1 (Debian's ``postgresql`` package, 15 or newer).

``initdb`` refuses to run as root, so as root the cluster belongs to the package's ``postgres`` user (or
``nobody`` when that user does not exist): the directory is created under the temp dir and handed to that
user, and ``initdb``/``pg_ctl`` run with ``subprocess.Popen(user=...)``. As a normal user everything simply
runs as that user. Durability is switched off (``fsync=off`` and friends): this cluster is for tests only.
"""

from __future__ import annotations

import glob
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import LiteralString, Self

from tests.servers._util import LOOPBACK, Identity, free_port, running_as_root, tail

POSTGRES_PACKAGE = "postgresql"
_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresError(RuntimeError):
    """The test PostgreSQL cluster failed to start, stop or create a database."""


def find_bindir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``: /usr/lib/postgresql/<newest>/bin, then pg_config."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(m.group(1)) if (m := re.search(r"/(\d+)/bin$", p)) else 0,
        reverse=True,
    )
    for candidate in candidates:
        if Path(candidate, "initdb").is_file() and Path(candidate, "pg_ctl").is_file():
            return Path(candidate)
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False).stdout
        bindir = Path(out.strip())
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    initdb = shutil.which("initdb")
    if initdb is not None and Path(initdb).with_name("pg_ctl").is_file():
        return Path(initdb).parent
    return None


class Postgres:
    """One PostgreSQL cluster: :meth:`start`, :meth:`create_database`, :meth:`stop` / :meth:`close`."""

    def __init__(self, *, bindir: Path | None = None, directory: Path | None = None) -> None:
        found = bindir if bindir is not None else find_bindir()
        if found is None:
            raise PostgresError(f"initdb/pg_ctl not found: apt-get install {POSTGRES_PACKAGE}")
        self._bindir = found
        if running_as_root():
            owner = "postgres" if _user_exists("postgres") else "nobody"
            self._owner: Identity | None = Identity.named(owner)
        else:
            self._owner = None
        base = directory if directory is not None else Path(tempfile.gettempdir())
        self._dir = Path(tempfile.mkdtemp(prefix="followupd-pg-", dir=base))
        self._dir.chmod(0o700)
        if self._owner is not None:
            self._owner.chown(self._dir)
        self._port = 0
        self._running = False
        self._initialised = False

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def port(self) -> int:
        return self._port

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def log_path(self) -> Path:
        return self._dir / "pg.log"

    @property
    def running(self) -> bool:
        return self._running

    @property
    def os_user(self) -> str:
        """The Unix user the cluster runs as."""
        return self._owner.user if self._owner is not None else Identity.current().user

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL (psycopg 3 driver) of ``database`` as the superuser ``postgres``."""
        return f"postgresql+psycopg://postgres@{LOOPBACK}:{self._port}/{database}"

    def conninfo(self, database: str = "postgres") -> str:
        """libpq connection string, for ``psycopg.connect``."""
        return f"host={LOOPBACK} port={self._port} user=postgres dbname={database}"

    def start(self) -> None:
        if self._running:
            return
        data = self._dir / "pg"
        if not self._initialised:
            self._run(
                self._bindir / "initdb",
                "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync",
            )  # fmt: skip
            self._initialised = True
        if self._port == 0:
            self._port = free_port()
        options = (
            f"-p {self._port} -k {self._dir} -c listen_addresses={LOOPBACK} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            self._bindir / "pg_ctl",
            "-D", str(data), "-o", options, "-l", str(self.log_path), "-w", "-t", "30", "start",
        )  # fmt: skip
        self._running = True

    def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        self._run(self._bindir / "pg_ctl", "-D", str(self._dir / "pg"), "-m", "fast", "-w", "stop")

    def close(self) -> None:
        """Stop and delete the cluster's directory."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """CREATE DATABASE ``name`` (a copy of ``template`` when given) and return its SQLAlchemy URL.

        A template must have no open connections (dispose of its engines first). Copying a migrated template
        takes ~50 ms where running the migrations takes ~700 ms.
        """
        if not _DB_NAME.match(name):
            raise ValueError(f"database name {name!r}: use lower-case letters, digits and _")
        if template is None:
            self._sql("CREATE DATABASE {}", name)
        else:
            if not _DB_NAME.match(template):
                raise ValueError(f"template name {template!r}: use lower-case letters, digits and _")
            self._sql("CREATE DATABASE {} TEMPLATE {}", name, template)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE ``name`` WITH (FORCE): connections still open to it are ended."""
        if not _DB_NAME.match(name):
            raise ValueError(f"database name {name!r}: use lower-case letters, digits and _")
        self._sql("DROP DATABASE IF EXISTS {} WITH (FORCE)", name)

    def _sql(self, template: LiteralString, *names: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.conninfo(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL(template).format(*(sql.Identifier(name) for name in names)))

    def _run(self, *command: str | Path) -> None:
        args = [str(c) for c in command]
        if self._owner is not None:
            result = subprocess.run(
                args,
                cwd=self._dir,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                check=False,
                user=self._owner.uid,
                group=self._owner.gid,
                extra_groups=[],
                timeout=120,
            )
        else:
            result = subprocess.run(
                args,
                cwd=self._dir,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                check=False,
                timeout=120,
            )
        if result.returncode != 0:
            raise PostgresError(
                f"{' '.join(args)} exited with {result.returncode}\n"
                f"--- output:\n{result.stdout}{result.stderr}\n"
                f"--- {self.log_path}:\n{tail(self.log_path)}"
            )


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
