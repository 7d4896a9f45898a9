"""An aiosmtpd SMTP server on 127.0.0.1 that records what it receives and fails on purpose.

The server runs its own asyncio loop in a background thread (one thread per server), so it works the same
for synchronous tests and for tests that run their own loop with ``asyncio.run``. Everything it records is
kept under a lock and handed out as copies.

Behaviour (:meth:`SmtpServer.set_mode`, changeable while running; it applies to the next command):

``accept``                 250 for everything.
``tempfail_then_accept``   451 at the end of DATA ``times`` times (counted over all connections), then 250.
``reject``                 550 at the end of DATA.
``reject_rcpt``            550 at RCPT for the chosen ``recipients``; the others are accepted.
``drop_before_data``       close the connection at MAIL or RCPT (``at``) without answering.
``drop_after_data``        store the message, then close the connection without answering DATA: the case
                           where a naive client resends and the recipient gets it twice.
``stall``                  store the message, then answer DATA only after ``seconds`` (default an hour),
                           so the client times out; stopping the server cancels the stall.

TLS (``tls=``): ``"none"`` (no STARTTLS offered: the downgrade case), ``"starttls"`` (offered, optional),
``"starttls_required"`` (530 for everything but EHLO/NOOP/STARTTLS/QUIT until STARTTLS), ``"implicit"``
(TLS from the first byte, as on port 465). Certificates come from a ``trustme.CA`` for ``127.0.0.1`` and
``localhost``. With ``auth=(user, password)`` the server offers AUTH PLAIN/LOGIN and requires it for MAIL;
AUTH is offered in cleartext only in the ``"none"`` mode (so a client that would send it there can be
caught). Every AUTH command is counted with whether it came over TLS (:attr:`auth_attempts`), including
those that were refused, so a test can assert that credentials never crossed in cleartext.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Literal, Self

import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.servers._util import LOOPBACK

SmtpMode = Literal[
    "accept",
    "tempfail_then_accept",
    "reject",
    "reject_rcpt",
    "drop_before_data",
    "drop_after_data",
    "stall",
]
SmtpTLS = Literal["none", "starttls", "starttls_required", "implicit"]
_Command = Callable[[Any], Awaitable[None]]
Outcome = Literal["accepted", "dropped", "stalled", "tempfailed", "rejected"]

_ALLOWED_BEFORE_STARTTLS = frozenset({"NOOP", "EHLO", "STARTTLS", "QUIT"})
_STORED: frozenset[Outcome] = frozenset({"accepted", "dropped", "stalled"})


class SmtpServerError(RuntimeError):
    """The test SMTP server failed to start or stop."""


@dataclass(frozen=True)
class ReceivedMessage:
    """One message as it arrived at the end of DATA."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes
    """The raw message bytes, dot-unstuffed, exactly as the client sent them (CRLF line ends)."""
    tls: bool
    authenticated_as: str | None
    outcome: Outcome


@dataclass(frozen=True)
class AuthAttempt:
    """One AUTH command. ``succeeded`` is None while it is in progress or when the client went away."""

    mechanism: str
    tls: bool
    succeeded: bool | None


@dataclass(frozen=True)
class _Behaviour:
    mode: SmtpMode = "accept"
    tempfails_left: int = 0
    reject_recipients: frozenset[str] = frozenset()
    drop_at: Literal["mail", "rcpt"] = "rcpt"
    stall_seconds: float = 3600.0


class SmtpServer:
    """A recording, misbehaving-on-demand SMTP server on ``127.0.0.1:<free port>``."""

    def __init__(
        self,
        *,
        tls: SmtpTLS = "none",
        ca: trustme.CA | None = None,
        auth: tuple[str, str] | None = None,
        mode: SmtpMode = "accept",
        hostname: str = "testbed.localhost",
    ) -> None:
        self._tls_mode: SmtpTLS = tls
        self._ca = ca
        if tls != "none" and ca is None:
            self._ca = trustme.CA()
        self._auth = auth
        self._hostname = hostname
        self._lock = threading.Lock()
        self._behaviour = _Behaviour()
        self._received: list[ReceivedMessage] = []
        self._auth_attempts: list[AuthAttempt] = []
        self._connections = 0
        self._port = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._protocols: set[_TestbedSMTP] = set()
        self._server_ctx: ssl.SSLContext | None = None
        if self._ca is not None:
            self._server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._ca.issue_cert("127.0.0.1", "localhost").configure_cert(self._server_ctx)
        self.set_mode(mode)

    # ---------------------------------------------------------------------------------------- properties

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def port(self) -> int:
        return self._port

    @property
    def tls(self) -> SmtpTLS:
        return self._tls_mode

    @property
    def ca(self) -> trustme.CA | None:
        return self._ca

    @property
    def auth(self) -> tuple[str, str] | None:
        return self._auth

    @property
    def mode(self) -> SmtpMode:
        with self._lock:
            return self._behaviour.mode

    @property
    def messages(self) -> list[ReceivedMessage]:
        """Messages the server kept: accepted, and also those it dropped after DATA or stalled on."""
        with self._lock:
            return [m for m in self._received if m.outcome in _STORED]

    @property
    def data_attempts(self) -> list[ReceivedMessage]:
        """Every complete DATA, including those answered 451 or 550."""
        with self._lock:
            return list(self._received)

    @property
    def connections(self) -> int:
        """Connections accepted so far (for implicit TLS: those whose handshake completed)."""
        with self._lock:
            return self._connections

    @property
    def auth_attempts(self) -> list[AuthAttempt]:
        with self._lock:
            return list(self._auth_attempts)

    @property
    def cleartext_auth_attempts(self) -> int:
        """AUTH commands that arrived without TLS (the client sent its credentials in the clear)."""
        with self._lock:
            return sum(1 for a in self._auth_attempts if not a.tls)

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts the server's CA and checks the host name."""
        if self._ca is None:
            raise SmtpServerError("this SMTP server has no TLS")
        ctx = ssl.create_default_context()
        self._ca.configure_trust(ctx)
        return ctx

    # ---------------------------------------------------------------------------------------- behaviour

    def set_mode(
        self,
        mode: SmtpMode,
        *,
        times: int = 1,
        recipients: Iterable[str] = (),
        at: Literal["mail", "rcpt"] = "rcpt",
        seconds: float = 3600.0,
    ) -> None:
        """Change how the server answers from the next command on (see the module docstring)."""
        behaviour = _Behaviour(
            mode=mode,
            tempfails_left=times if mode == "tempfail_then_accept" else 0,
            reject_recipients=frozenset(r.lower() for r in recipients),
            drop_at=at,
            stall_seconds=seconds,
        )
        if mode == "reject_rcpt" and not behaviour.reject_recipients:
            raise ValueError("reject_rcpt needs recipients=")
        with self._lock:
            self._behaviour = behaviour

    def clear(self) -> None:
        """Forget recorded messages, AUTH attempts and the connection count."""
        with self._lock:
            self._received.clear()
            self._auth_attempts.clear()
            self._connections = 0

    def wait_for_messages(self, count: int, timeout: float = 5.0) -> list[ReceivedMessage]:
        """Wait until at least ``count`` messages were kept; return them (raise on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            messages = self.messages
            if len(messages) >= count:
                return messages
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} messages, got {len(messages)}")
            time.sleep(0.01)

    # ---------------------------------------------------------------------------------------- life cycle

    def start(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            return
        self._ready.clear()
        self._startup_error = None
        self._thread = threading.Thread(target=self._run, name=f"smtp-testbed-{id(self):x}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise SmtpServerError(f"SMTP server did not start within {timeout} s")
        if self._startup_error is not None:
            self._thread.join(timeout)
            self._thread = None
            raise SmtpServerError("SMTP server failed to start") from self._startup_error

    def stop(self, timeout: float = 10.0) -> None:
        """Close the listener and every open connection (stalled ones too) and end the thread."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        loop, stop_event = self._loop, self._stop_event
        if loop is not None and stop_event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between
                loop.call_soon_threadsafe(stop_event.set)
        thread.join(timeout)
        if thread.is_alive():
            raise SmtpServerError(f"SMTP server thread did not stop within {timeout} s")

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---------------------------------------------------------------------------------------- internals

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as error:  # reported by start(), never left to the thread hook
            if not self._ready.is_set():
                self._startup_error = error
                self._ready.set()

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stop_event = asyncio.Event()
        server = await loop.create_server(
            lambda: _TestbedSMTP(self, loop),
            host=LOOPBACK,
            port=0,
            ssl=self._server_ctx if self._tls_mode == "implicit" else None,
        )
        self._port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stop_event.wait()
        finally:
            server.close()
            for protocol in list(self._protocols):
                protocol.abort()
            current = asyncio.current_task()
            tasks = [task for task in asyncio.all_tasks() if task is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await server.wait_closed()
            # Let the transports' connection_lost callbacks run, so their sockets are closed here.
            for _ in range(50):
                if not self._protocols:
                    break
                await asyncio.sleep(0.01)

    # Called from the loop thread by the protocol and the handler.

    def _connection_made(self, protocol: _TestbedSMTP) -> None:
        with self._lock:
            self._connections += 1
        self._protocols.add(protocol)

    def _connection_lost(self, protocol: _TestbedSMTP) -> None:
        self._protocols.discard(protocol)

    def _auth_started(self, mechanism: str, tls: bool) -> int:
        with self._lock:
            self._auth_attempts.append(AuthAttempt(mechanism=mechanism, tls=tls, succeeded=None))
            return len(self._auth_attempts) - 1

    def _auth_finished(self, index: int, succeeded: bool) -> None:
        with self._lock:
            if index < len(self._auth_attempts):
                self._auth_attempts[index] = replace(self._auth_attempts[index], succeeded=succeeded)

    def _behaviour_now(self) -> _Behaviour:
        with self._lock:
            return self._behaviour

    def _take_tempfail(self) -> bool:
        with self._lock:
            b = self._behaviour
            if b.mode != "tempfail_then_accept" or b.tempfails_left <= 0:
                return False
            self._behaviour = replace(b, tempfails_left=b.tempfails_left - 1)
            return True

    def _record(self, message: ReceivedMessage) -> None:
        with self._lock:
            self._received.append(message)


class _TestbedSMTP(SMTP):
    """aiosmtpd's SMTP protocol plus connection/AUTH accounting and our own STARTTLS requirement."""

    def __init__(self, owner: SmtpServer, loop: asyncio.AbstractEventLoop) -> None:
        auth = owner.auth
        super().__init__(
            _Handler(owner),
            hostname=owner._hostname,
            ident="followupd testbed",
            tls_context=owner._server_ctx if owner.tls in ("starttls", "starttls_required") else None,
            # Enforced below, so that an AUTH sent before STARTTLS is still counted.
            require_starttls=False,
            # aiosmtpd only knows STARTTLS as "TLS": implicit TLS and the cleartext mode must not need it.
            auth_require_tls=owner.tls in ("starttls", "starttls_required"),
            authenticator=_Authenticator(auth) if auth is not None else None,
            enable_SMTPUTF8=True,
            timeout=300,
            loop=loop,
        )
        self._owner = owner
        self._counted = False
        for name, method in list(self._smtp_methods.items()):
            if name not in _ALLOWED_BEFORE_STARTTLS:
                self._smtp_methods[name] = self._guarded(name, method)

    def uses_tls(self) -> bool:
        transport = self.transport
        return transport is not None and transport.get_extra_info("ssl_object") is not None

    def abort(self) -> None:
        """Close the connection at once, without a reply (and without a TLS close_notify)."""
        for transport in (self.transport, self._original_transport):
            if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
                transport.abort()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not self._counted:  # a second call comes after STARTTLS, on the same connection
            self._counted = True
            self._owner._connection_made(self)

    def connection_lost(self, error: Exception | None) -> None:
        self._owner._connection_lost(self)
        super().connection_lost(error)

    def _guarded(self, name: str, method: _Command) -> _Command:
        async def guarded(arg: Any) -> None:
            tls = self.uses_tls()
            index = None
            if name == "AUTH":
                mechanism = str(arg).split()[0].upper() if arg else ""
                index = self._owner._auth_started(mechanism, tls)
            if self._owner.tls == "starttls_required" and not tls:
                await self.push("530 5.7.0 Must issue a STARTTLS command first")
                if index is not None:
                    self._owner._auth_finished(index, succeeded=False)
                return
            await method(arg)
            if index is not None:
                session = self.session
                self._owner._auth_finished(index, succeeded=bool(session and session.authenticated))

        return guarded


class _Authenticator:
    def __init__(self, credentials: tuple[str, str]) -> None:
        self._login = credentials[0].encode()
        self._password = credentials[1].encode()

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            self._login,
            self._password,
        ):
            return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)


async def _hang_up(server: SMTP) -> str:
    """Close the connection without answering; the handler task is cancelled by connection_lost."""
    if isinstance(server, _TestbedSMTP):
        server.abort()
    await asyncio.Event().wait()  # cancelled when the connection is lost or the server stops
    return "421 4.3.0 not reached"  # pragma: no cover


class _Handler:
    """aiosmtpd handler hooks: they consult the server's current behaviour on every command."""

    def __init__(self, owner: SmtpServer) -> None:
        self._owner = owner

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self._owner.auth is None:
            responses = [r for r in responses if not r.startswith("250-AUTH")]
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        if self._owner.auth is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        behaviour = self._owner._behaviour_now()
        if behaviour.mode == "drop_before_data" and behaviour.drop_at == "mail":
            return await _hang_up(server)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        behaviour = self._owner._behaviour_now()
        if behaviour.mode == "drop_before_data":
            return await _hang_up(server)
        if behaviour.mode == "reject_rcpt" and address.lower() in behaviour.reject_recipients:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        behaviour = self._owner._behaviour_now()
        if self._owner._take_tempfail():
            outcome: Outcome = "tempfailed"
        elif behaviour.mode == "reject":
            outcome = "rejected"
        elif behaviour.mode == "drop_after_data":
            outcome = "dropped"
        elif behaviour.mode == "stall":
            outcome = "stalled"
        else:
            outcome = "accepted"
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        tls = server.uses_tls() if isinstance(server, _TestbedSMTP) else False
        self._owner._record(
            ReceivedMessage(
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                content=envelope.original_content or b"",
                tls=tls,
                authenticated_as=login,
                outcome=outcome,
            )
        )
        if outcome == "tempfailed":
            return "451 4.3.0 Try again later"
        if outcome == "rejected":
            return "550 5.7.1 Message rejected"
        if outcome == "dropped":
            return await _hang_up(server)
        if outcome == "stalled":
            await asyncio.sleep(behaviour.stall_seconds)
        return "250 2.0.0 OK: queued"
