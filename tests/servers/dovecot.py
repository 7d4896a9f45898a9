"""A real Dovecot IMAP server on 127.0.0.1, in a temporary directory, for tests and benchmarks.

Two ways to run it (see TESTBED.md in the shared notes):

* **root variant** — the test process is root (CI). Dovecot's master runs as root, its login and internal
  processes as the package's ``dovenull``/``dovecot`` users, and the mail processes as ``nobody:nogroup``
  (``userdb`` ``uid=nobody gid=nogroup``); the home tree belongs to ``nobody:nogroup``.
* **non-root variant** — Dovecot runs entirely as one unprivileged user (``default_internal_user`` etc.).
  That is what a developer who is not root gets. When the test process *is* root, ``Dovecot(run_as="nobody")``
  exercises the same variant: the whole directory is given to ``nobody:nogroup`` and the master is started
  with ``subprocess.Popen(user=..., group=..., extra_groups=[])`` (setuid/setgid before exec, no wrapper
  process), so ``Popen.pid`` is Dovecot's master pid either way.

Dovecot is started in the foreground (``dovecot -F``) as a direct child in its own session, so stopping it
is "SIGTERM the process group, wait for the master" — no pid-file polling and no zombie left behind.

TLS (``Dovecot(tls=ca)``): ``ssl = required``, implicit TLS on :attr:`Dovecot.imaps_port`, STARTTLS on
:attr:`Dovecot.port`. Beware: Dovecot counts a connection whose local and remote IP are equal as "secured",
so on loopback it does *not* refuse a plaintext LOGIN on the plain port even with ``ssl = required``. Assert
what the client did instead: the log line of each login says ``TLS`` or ``secured``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from itertools import count
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import trustme
from imapclient import IMAPClient

from tests.servers._util import LOOPBACK, Identity, free_port, running_as_root, tail, wait_port_free

DOVECOT_BINARY = Path("/usr/sbin/dovecot")
DOVECOT_PACKAGE = "dovecot-imapd"

_APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]")
_USER_NAME = re.compile(r"^[A-Za-z0-9_%+@-][A-Za-z0-9._%+@-]*$")
_FOLDER_NAME = re.compile(r"^[A-Za-z0-9 _-]+$")
_maildir_serial = count(1)

Variant = Literal["root", "nonroot"]
ClientTLS = Literal["none", "implicit", "starttls"]


class DovecotError(RuntimeError):
    """Dovecot did not start, or did something a test did not expect."""


def dovecot_available() -> bool:
    return DOVECOT_BINARY.is_file() and os.access(DOVECOT_BINARY, os.X_OK)


class Dovecot:
    """One Dovecot instance with its own config, users, mail and ports.

    Use as a context manager, or call :meth:`start` and :meth:`close` yourself. Every user's password is
    kept here so :meth:`client` can log in. ``extra_config`` is appended to the generated dovecot.conf
    (later settings win), e.g. ``"imap_idle_notify_interval = 5 secs"``.
    """

    def __init__(
        self,
        *,
        tls: trustme.CA | None = None,
        run_as: str | None = None,
        directory: Path | None = None,
        start_timeout: float = 10.0,
        client_timeout: float = 10.0,
        extra_config: str = "",
    ) -> None:
        if not dovecot_available():
            raise DovecotError(f"{DOVECOT_BINARY} not found: apt-get install {DOVECOT_PACKAGE}")
        if run_as is not None and not running_as_root() and run_as != Identity.current().user:
            raise DovecotError(f"only root can run Dovecot as {run_as!r}")
        self._ca = tls
        self._start_timeout = start_timeout
        self._client_timeout = client_timeout
        self._extra_config = extra_config
        # Who runs the master (None: whoever we are) and who owns the mail files.
        if running_as_root() and run_as in (None, "root"):
            self._variant: Variant = "root"
            self._server_identity: Identity | None = None
            self._mail_identity = Identity.named("nobody", "nogroup")
        else:
            self._variant = "nonroot"
            ident = Identity.named(run_as) if run_as is not None else Identity.current()
            self._server_identity = ident if running_as_root() else None
            self._mail_identity = ident
        self._owner = self._server_identity  # owner of the whole directory (non-root variant as root)
        base = directory if directory is not None else Path(tempfile.gettempdir())
        self._dir = Path(tempfile.mkdtemp(prefix="followupd-dovecot-", dir=base))
        self._dir.chmod(0o755)
        if self._owner is not None:
            try:
                _check_traversable(self._dir, self._owner)
            except DovecotError:
                self._dir.rmdir()
                raise
        self._users: dict[str, str] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._port = 0
        self._imaps_port = 0
        self._write_static_files()

    # ----------------------------------------------------------------------------------------- properties

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def port(self) -> int:
        """The plain IMAP port (STARTTLS is offered on it when TLS is on)."""
        return self._port

    @property
    def imaps_port(self) -> int:
        """The implicit-TLS port; 0 when the server runs without TLS."""
        return self._imaps_port

    @property
    def ca(self) -> trustme.CA | None:
        return self._ca

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def log_path(self) -> Path:
        return self._dir / "dovecot.log"

    @property
    def config_path(self) -> Path:
        return self._dir / "dovecot.conf"

    @property
    def variant(self) -> Variant:
        """``"root"`` (master as root, mail as nobody) or ``"nonroot"`` (everything as one user)."""
        return self._variant

    @property
    def server_user(self) -> str:
        """The user the master process runs as."""
        if self._server_identity is not None:
            return self._server_identity.user
        return Identity.current().user

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    @property
    def users(self) -> dict[str, str]:
        """user name -> password, for every user added so far (a copy)."""
        return dict(self._users)

    def home(self, user: str) -> Path:
        return self._dir / "home" / user

    def maildir(self, user: str, folder: str = "INBOX") -> Path:
        """The Maildir++ directory of ``folder`` (``INBOX`` is the Maildir itself, ``Sent`` is ``.Sent``)."""
        root = self.home(user) / "Maildir"
        if folder.upper() == "INBOX":
            return root
        if not _FOLDER_NAME.match(folder):
            raise ValueError(f"folder name {folder!r} is not supported by write_maildir")
        return root / f".{folder}"

    # ------------------------------------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Start Dovecot (on the ports it had before, if it ran before) and wait until it greets."""
        if self.running:
            return
        first_start = self._port == 0
        attempts = 3 if first_start else 1
        for attempt in range(attempts):
            if first_start:
                self._port = free_port()
                self._imaps_port = free_port() if self._ca is not None else 0
            self._write_config()
            try:
                self._spawn_and_wait()
            except DovecotError:
                in_use = "Address already in use" in tail(self.log_path) + tail(self._stderr_path)
                if in_use and attempt + 1 < attempts:
                    continue
                raise
            return

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM Dovecot's processes and wait for the master (SIGKILL after ``timeout``); data stays."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            # The master runs in its own session (start_new_session), so its pid is the process group id.
            # Signalling the whole group stops master, login, auth and imap processes together: ~2 ms,
            # where SIGTERM to the master alone takes ~1.1 s (it waits for its children to go).
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(timeout)
        # The login processes share the listening sockets; wait until the ports can be bound again.
        for port in (self._port, self._imaps_port):
            if port:
                wait_port_free(port, timeout)

    def restart(self) -> None:
        """Stop and start again on the same ports; users and mail are kept."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop and delete the directory."""
        self.stop()
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

    # ------------------------------------------------------------------------------------------ users

    def add_user(self, name: str, password: str) -> None:
        """Add a user to the passwd-file (Dovecot re-reads it, so this works while running)."""
        if not _USER_NAME.match(name):
            raise ValueError(f"user name {name!r}: use letters, digits and ._%+@-")
        if ":" in password or "\n" in password or "\r" in password:
            raise ValueError("password must not contain ':' or line breaks")
        if name in self._users:
            raise ValueError(f"user {name!r} exists already")
        # One passwd-file per user: Dovecot stats a passwd-file at most once a second, so a user appended
        # to a shared file right after a login could be refused; a new file is read on its first lookup.
        path = self._dir / "users" / name
        path.write_text(f"{name}:{{PLAIN}}{password}\n", encoding="utf-8")
        path.chmod(0o644)
        if self._owner is not None:
            self._owner.chown(path)
        self._users[name] = password

    # ------------------------------------------------------------------------------------------ clients

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's CA and checks the host name (127.0.0.1)."""
        if self._ca is None:
            raise DovecotError("this Dovecot runs without TLS")
        ctx = ssl.create_default_context()
        self._ca.configure_trust(ctx)
        return ctx

    def client(self, user: str, *, tls: ClientTLS | None = None, timeout: float | None = None) -> Any:
        """A logged-in :class:`imapclient.IMAPClient`; the caller logs out (``with`` works).

        ``tls`` defaults to ``"none"`` without TLS and to ``"implicit"`` (imaps port) with TLS.
        """
        mode: ClientTLS = tls if tls is not None else ("implicit" if self._ca is not None else "none")
        if mode == "implicit":
            client = IMAPClient(
                self.host,
                port=self._imaps_port,
                ssl=True,
                ssl_context=self.client_ssl_context(),
                timeout=timeout or self._client_timeout,
            )
        else:
            client = IMAPClient(
                self.host, port=self._port, ssl=False, timeout=timeout or self._client_timeout
            )
        try:
            if mode == "starttls":
                client.starttls(self.client_ssl_context())
            client.login(user, self._users[user])
        except BaseException:
            _shutdown_quietly(client)
            raise
        return client

    def append(
        self,
        user: str,
        folder: str,
        raw: bytes,
        flags: Sequence[str | bytes] = (),
        msg_time: datetime | None = None,
    ) -> int:
        """APPEND one message over IMAP and return its UID (from UIDPLUS's APPENDUID)."""
        with self.client(user) as client:
            response: bytes = client.append(folder, raw, flags=tuple(flags), msg_time=msg_time)
        match = _APPENDUID.search(response)
        if match is None:
            raise DovecotError(f"APPEND answered without APPENDUID: {response!r}")
        return int(match.group(2))

    def create_folder(self, user: str, folder: str) -> None:
        with self.client(user) as client:
            client.create_folder(folder)

    def delete_folder(self, user: str, folder: str) -> None:
        with self.client(user) as client:
            client.delete_folder(folder)

    def uidvalidity(self, user: str, folder: str) -> int:
        with self.client(user) as client:
            status = client.folder_status(folder, [b"UIDVALIDITY"])
        return int(status[b"UIDVALIDITY"])

    def recreate_folder(self, user: str, folder: str) -> int:
        """Delete and create ``folder`` (its mail is lost) so its UIDVALIDITY changes; returns the new one."""
        if folder.upper() == "INBOX":
            raise ValueError("INBOX cannot be deleted over IMAP; recreate another folder")
        with self.client(user) as client:
            client.delete_folder(folder)
            client.create_folder(folder)
            client.subscribe_folder(folder)
            status = client.folder_status(folder, [b"UIDVALIDITY"])
        return int(status[b"UIDVALIDITY"])

    # ------------------------------------------------------------------------------------------ seeding

    def write_maildir(
        self,
        user: str,
        folder: str,
        messages: Iterable[bytes],
        *,
        flags: str = "S",
        mtime: float | None = None,
    ) -> int:
        """Write messages straight into the user's Maildir (fast bulk seeding); returns how many.

        Meant for before the user's first login (Dovecot then indexes them on first access); files go to
        ``cur/`` named ``<time>.<n>.testbed:2,<flags>`` and belong to the mail user. ``mtime`` sets the
        files' modification time, which Dovecot uses as the INTERNALDATE.
        """
        if user not in self._users:
            raise DovecotError(f"unknown user {user!r}: add_user first")
        target = self.maildir(user, folder)
        created = self._make_maildir_dirs(user, target, subfolder=folder.upper() != "INBOX")
        now = int(time.time())
        written = 0
        cur = target / "cur"
        for raw in messages:
            path = cur / f"{now}.{next(_maildir_serial)}.testbed:2,{flags}"
            path.write_bytes(raw)
            if mtime is not None:
                os.utime(path, (mtime, mtime))
            self._mail_identity.chown(path)
            written += 1
        for path in created:
            self._mail_identity.chown(path)
        return written

    # ------------------------------------------------------------------------------------------ internals

    @property
    def _stderr_path(self) -> Path:
        return self._dir / "dovecot.stderr"

    def _write_static_files(self) -> None:
        users = self._dir / "users"
        users.mkdir()
        users.chmod(0o755)  # read by the auth process, which runs as the `dovecot` user in the root variant
        home = self._dir / "home"
        home.mkdir()
        if self._ca is not None:
            cert = self._ca.issue_cert("127.0.0.1", "localhost")
            cert.private_key_pem.write_to_path(str(self._dir / "key.pem"))
            (self._dir / "key.pem").chmod(0o600)
            (self._dir / "cert.pem").write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        if self._owner is not None:
            self._owner.chown_tree(self._dir)
        else:
            self._mail_identity.chown(home)

    def _write_config(self) -> None:
        d = self._dir
        if self._variant == "nonroot":
            ident = self._mail_identity
            internal = (
                f"default_internal_user = {ident.user}\n"
                f"default_internal_group = {ident.group}\n"
                f"default_login_user = {ident.user}\n"
            )
        else:
            internal = ""
        uid, gid = self._mail_identity.user, self._mail_identity.group
        if self._ca is not None:
            tls = (
                "ssl = required\n"
                f"ssl_cert = <{d}/cert.pem\n"
                f"ssl_key = <{d}/key.pem\n"
                "disable_plaintext_auth = yes\n"
            )
            imaps = f"  inet_listener imaps {{\n    port = {self._imaps_port}\n    ssl = yes\n  }}\n"
        else:
            tls = "ssl = no\ndisable_plaintext_auth = no\n"
            imaps = "  inet_listener imaps {\n    port = 0\n  }\n"
        config = (
            f"base_dir = {d}/run\n"
            f"state_dir = {d}/state\n"
            f"log_path = {d}/dovecot.log\n"
            f"info_log_path = {d}/dovecot.log\n"
            "protocols = imap\n"
            "listen = 127.0.0.1\n"
            f"{tls}"
            "auth_mechanisms = plain login\n"
            "auth_failure_delay = 0\n"
            f"{internal}"
            "first_valid_uid = 1\n"
            "mail_fsync = never\n"
            "mail_max_userip_connections = 200\n"
            f"mail_location = maildir:{d}/home/%u/Maildir\n"
            "passdb {\n"
            "  driver = passwd-file\n"
            f"  args = scheme=PLAIN username_format=%u {d}/users/%u\n"
            "}\n"
            "userdb {\n"
            "  driver = static\n"
            f"  args = uid={uid} gid={gid} home={d}/home/%u\n"
            "}\n"
            "service imap-login {\n"
            "  chroot =\n"
            "  inet_listener imap {\n"
            f"    port = {self._port}\n"
            "  }\n"
            f"{imaps}"
            "}\n"
            "service anvil {\n"
            "  chroot =\n"
            "}\n"
            "namespace inbox {\n"
            "  inbox = yes\n"
            "  mailbox Sent {\n"
            "    special_use = \\Sent\n"
            "    auto = subscribe\n"
            "  }\n"
            "  mailbox Drafts {\n"
            "    special_use = \\Drafts\n"
            "    auto = subscribe\n"
            "  }\n"
            "}\n"
            f"{self._extra_config}\n"
        )
        self.config_path.write_text(config, encoding="utf-8")
        self.config_path.chmod(0o644)
        if self._owner is not None:
            self._owner.chown(self.config_path)

    def _spawn_and_wait(self) -> None:
        command = [str(DOVECOT_BINARY), "-F", "-c", str(self.config_path)]
        with self._stderr_path.open("ab") as stderr:
            if self._server_identity is not None:
                ident = self._server_identity
                proc = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=stderr,
                    stderr=subprocess.STDOUT,
                    cwd=self._dir,
                    user=ident.uid,
                    group=ident.gid,
                    extra_groups=[],
                    start_new_session=True,
                )
            else:
                proc = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=stderr,
                    stderr=subprocess.STDOUT,
                    cwd=self._dir,
                    start_new_session=True,
                )
        self._proc = proc
        try:
            self._wait_ready(proc)
        except BaseException:
            self.stop(timeout=5)
            raise

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self._start_timeout
        last_error = "no attempt"
        while time.monotonic() < deadline:
            code = proc.poll()
            if code is not None:
                raise DovecotError(
                    f"dovecot exited with code {code} while starting\n"
                    f"--- {self._stderr_path}:\n{tail(self._stderr_path)}\n"
                    f"--- {self.log_path}:\n{tail(self.log_path)}"
                )
            try:
                greeting = _read_greeting(self._port)
            except OSError as error:
                last_error = repr(error)
            else:
                if greeting.startswith(b"* OK") and (not self._imaps_port or _accepts(self._imaps_port)):
                    return
                last_error = f"greeting {greeting!r}"
            time.sleep(0.05)
        raise DovecotError(
            f"dovecot did not accept connections on {LOOPBACK}:{self._port} within "
            f"{self._start_timeout} s ({last_error})\n"
            f"--- {self._stderr_path}:\n{tail(self._stderr_path)}\n"
            f"--- {self.log_path}:\n{tail(self.log_path)}"
        )

    def _make_maildir_dirs(self, user: str, target: Path, *, subfolder: bool) -> list[Path]:
        """Create home, Maildir and the folder's cur/new/tmp; return what was created (to chown)."""
        created: list[Path] = []
        wanted = [self.home(user), self.home(user) / "Maildir"]
        if subfolder:
            wanted.append(target)
        wanted += [target / "cur", target / "new", target / "tmp"]
        for path in wanted:
            if not path.exists():
                path.mkdir(mode=0o700)
                created.append(path)
        if subfolder and not (target / "maildirfolder").exists():
            (target / "maildirfolder").touch(mode=0o600)
            created.append(target / "maildirfolder")
        return created


def _read_greeting(port: int) -> bytes:
    with socket.create_connection((LOOPBACK, port), timeout=1.0) as sock:
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(512)
            if not chunk:
                break
            data += chunk
        with contextlib.suppress(OSError):
            sock.sendall(b"z LOGOUT\r\n")
        return data


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1.0):
            return True
    except OSError:
        return False


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def _shutdown_quietly(client: Any) -> None:
    with contextlib.suppress(OSError):
        client.shutdown()


def _check_traversable(path: Path, ident: Identity) -> None:
    """Fail early when ``ident`` could not reach ``path`` (e.g. TMPDIR inside a 0700 home)."""
    for parent in path.parents:
        st = parent.stat()
        if st.st_uid == ident.uid:
            continue
        if not st.st_mode & stat.S_IXOTH:
            raise DovecotError(
                f"{ident.user} cannot enter {parent} (mode {stat.filemode(st.st_mode)}); "
                "pass Dovecot(directory=...) a place it can reach, such as /tmp"
            )
