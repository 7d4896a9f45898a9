"""Handing one message to an SMTP server, step by step, so that every failure is known by its phase.

``aiosmtplib.send`` hides whether a dropped connection happened before or after the message went out, and
that is the one thing exactly-once delivery needs to know. So the conversation is driven here command by
command, and its result is one of four :class:`Delivery` values:

- ``SENT``: the server answered 250 to the message (perhaps with some recipients refused: ``refused``);
- ``RETRY``: nothing was delivered and trying again later may work (connection failures before the message
  data, 4xx replies);
- ``FAILED``: the server refused for good (5xx); ``detail`` holds its reply;
- ``UNKNOWN``: the message data went out and the reply never came (connection lost, timeout). The server may
  have it; resending could deliver it twice.

Problems that no retry of this message can fix raise instead: :class:`AuthenticationError` (login refused),
:class:`InsecureTransportError` (STARTTLS not offered, or credentials would cross unencrypted) and
:class:`MailError` for an untrusted certificate. Those always happen before the message data.

Security: ``tls`` is implicit TLS (465); ``starttls`` is *mandatory* STARTTLS — the upgrade is requested
explicitly and a server that does not offer it is refused before any AUTH (aiosmtplib's default
``start_tls=None`` would carry on in cleartext). Certificates are verified against the system store or
``ca_file``. ``none`` is accepted only for a loopback host.
"""

from __future__ import annotations

import enum
import logging
import re
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from aiosmtplib import (
    SMTP,
    SMTPAuthenticationError,
    SMTPException,
    SMTPRecipientRefused,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)

from followupd.config import SmtpConfig, is_loopback
from followupd.errors import AuthenticationError, InsecureTransportError, MailError

log = logging.getLogger(__name__)

_LINE_END = re.compile(rb"\r\n|\r|\n")
_LEADING_DOT = re.compile(rb"(?m)^\.")
_NETWORK_ERRORS = (SMTPServerDisconnected, SMTPTimeoutError, OSError)


class Delivery(enum.StrEnum):
    """What became of one message handed to the server."""

    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class SmtpResult:
    """The outcome, the server's reply or the error (for ``last_error``), and refused recipients."""

    status: Delivery
    detail: str = ""
    refused: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Login:
    """Credentials for AUTH: a password, or an OAuth2 access token used with XOAUTH2."""

    username: str
    secret: str
    oauth2: bool = False


def canonical(raw: bytes) -> bytes:
    """``raw`` with CRLF line ends and a final CRLF: the exact bytes the server receives (before stuffing)."""
    text = _LINE_END.sub(b"\r\n", raw)
    return text if text.endswith(b"\r\n") else text + b"\r\n"


async def send_message(
    cfg: SmtpConfig,
    login: Login | None,
    *,
    sender: str,
    recipients: Sequence[str],
    raw: bytes,
    local_hostname: str = "localhost",
) -> SmtpResult:
    """Deliver ``raw`` from ``sender`` to ``recipients`` over one new connection; see the module docstring.

    ``login`` is used when the server offers AUTH. ``raw`` should already be :func:`canonical`. The
    connection is always closed on return.
    """
    if cfg.security == "none" and not is_loopback(cfg.host):
        raise InsecureTransportError(f"refusing to send through {cfg.host} without TLS")
    smtp = SMTP(
        hostname=cfg.host,
        port=cfg.port,
        timeout=cfg.timeout.total_seconds(),
        use_tls=cfg.security == "tls",
        # Never None (opportunistic): STARTTLS is requested explicitly below and required when configured.
        start_tls=False,
        tls_context=_tls_context(cfg),
        local_hostname=local_hostname,
    )
    where = f"SMTP {cfg.host}:{cfg.port}"
    try:
        ready = await _before_message(smtp, cfg, login, where, sender=sender, recipients=recipients)
        if isinstance(ready, SmtpResult):
            return ready
        result = await _message(smtp, raw, where)
    finally:
        smtp.close()
    if result.status is Delivery.SENT and ready:
        return SmtpResult(Delivery.SENT, result.detail, ready)
    return result


async def _before_message(
    smtp: SMTP, cfg: SmtpConfig, login: Login | None, where: str, *, sender: str, recipients: Sequence[str]
) -> SmtpResult | dict[str, str]:
    """Everything up to the server's 354: the refused recipients, or the outcome when it ends early.

    Nothing of the message has left yet, so every failure here is RETRY or FAILED, never UNKNOWN.
    """
    try:
        await smtp.connect()
        await _secure(smtp, cfg, where)
        if login is not None and smtp.supports_extension("auth"):
            await _login(smtp, login, where)
        refused = await _envelope(smtp, sender, recipients)
        if len(refused) == len(recipients):
            return _all_refused(refused)
        reply = await smtp.execute_command(b"DATA")
    except MailError:  # our own verdicts (insecure, login refused) are ConnectionErrors too: not retries
        raise
    except (SMTPException, OSError, ValueError) as exc:
        return _before_data_failure(exc, where)
    if reply.code != 354:
        return _by_code(reply.code, f"{where}: DATA: {reply.code} {reply.message}")
    return refused


def _before_data_failure(exc: Exception, where: str) -> SmtpResult:
    """Nothing of the message left: a reply decides by its code; anything else may work another time."""
    _raise_if_certificate(exc, where)  # first: SSLCertVerificationError is a ValueError too
    if isinstance(exc, SMTPResponseException):
        return _by_code(exc.code, f"{where}: {exc.code} {exc.message}")
    if isinstance(exc, ValueError):  # an address that cannot go into a command (non-ASCII, no SMTPUTF8)
        return SmtpResult(Delivery.FAILED, f"{where}: cannot send to this address: {_text(exc)}")
    return SmtpResult(Delivery.RETRY, f"{where}: {_text(exc)} (before the message was sent)")


async def _secure(smtp: SMTP, cfg: SmtpConfig, where: str) -> None:
    if cfg.security == "starttls":
        await smtp.ehlo()
        if not smtp.supports_extension("starttls"):
            raise InsecureTransportError(
                f"{where} does not offer STARTTLS; refusing to log in or send without encryption",
                hint='Check the port (587 for STARTTLS, 465 with security = "tls"); a server that stops '
                "offering STARTTLS may be under a downgrade attack.",
            )
        await smtp.starttls()
    if smtp.is_ehlo_or_helo_needed:
        await smtp.ehlo()
    encrypted = smtp.get_transport_info("sslcontext") is not None
    if not encrypted and not (cfg.security == "none" and is_loopback(cfg.host)):
        raise InsecureTransportError(f"{where}: the connection is not encrypted; refusing to continue")


async def _login(smtp: SMTP, login: Login, where: str) -> None:
    try:
        if login.oauth2:
            await smtp.auth_xoauth2(login.username, login.secret)
        elif "plain" in smtp.server_auth_methods:
            # One mechanism, not aiosmtplib's try-them-all: a wrong password must cost one failure, not three.
            await smtp.auth_plain(login.username, login.secret)
        else:
            await smtp.login(login.username, login.secret)
    except SMTPAuthenticationError as exc:
        raise AuthenticationError(
            f"{where} refused the login for {login.username}: {exc.code} {exc.message}",
            hint="Check the username and password source; for Gmail use an app password or OAuth2.",
        ) from None
    except SMTPResponseException:
        raise
    except SMTPException as exc:  # e.g. no AUTH mechanism both sides support
        if isinstance(exc, _NETWORK_ERRORS):
            raise
        raise AuthenticationError(f"{where}: cannot log in: {_text(exc)}") from None
    log.debug("%s: logged in as %s", where, login.username)


async def _envelope(smtp: SMTP, sender: str, recipients: Sequence[str]) -> dict[str, str]:
    """MAIL FROM and one RCPT TO per recipient; returns the refused recipients with the server's reply."""
    await smtp.mail(sender)
    refused: dict[str, str] = {}
    for recipient in recipients:
        try:
            await smtp.rcpt(recipient)
        except SMTPRecipientRefused as exc:
            refused[recipient] = f"{exc.code} {exc.message}"
    return refused


async def _message(smtp: SMTP, raw: bytes, where: str) -> SmtpResult:
    """Send the message data after the server's 354, and read the verdict. From here on, loss is UNKNOWN."""
    protocol = smtp.protocol
    if protocol is None:
        return SmtpResult(Delivery.RETRY, f"{where}: connection lost before the message was sent")
    payload = _LEADING_DOT.sub(b"..", canonical(raw)) + b".\r\n"
    try:
        protocol.write(payload)
    except _NETWORK_ERRORS as exc:  # the transport was already closed: not a byte of the message left
        return SmtpResult(Delivery.RETRY, f"{where}: {_text(exc)} (before the message was sent)")
    try:
        reply = await protocol.read_response(timeout=smtp.timeout)
    except _NETWORK_ERRORS as exc:
        return SmtpResult(
            Delivery.UNKNOWN, f"{where}: {_text(exc)} after the message was sent; the server may have it"
        )
    except SMTPResponseException as exc:  # a garbled reply
        return SmtpResult(Delivery.UNKNOWN, f"{where}: unreadable reply after the message: {exc.message}")
    if reply.code == 250:
        await _quit(smtp)
        return SmtpResult(Delivery.SENT, f"{reply.code} {reply.message}")
    return _after_data(reply.code, f"{where}: {reply.code} {reply.message}")


def _after_data(code: int, detail: str) -> SmtpResult:
    """The verdict on the message itself: only a 4xx/5xx says it was refused; anything else may have been
    taken, so a retry could deliver it twice."""
    if 400 <= code < 600:
        return _by_code(code, detail)
    return SmtpResult(Delivery.UNKNOWN, f"unexpected reply after the message: {detail}")


async def _quit(smtp: SMTP) -> None:
    try:
        await smtp.quit()
    except (SMTPException, OSError):  # the message is already accepted; a rude goodbye changes nothing
        log.debug("SMTP QUIT failed after a successful send")


def _by_code(code: int, detail: str) -> SmtpResult:
    if 400 <= code < 500:
        return SmtpResult(Delivery.RETRY, detail)
    if 500 <= code < 600:
        return SmtpResult(Delivery.FAILED, detail)
    return SmtpResult(Delivery.RETRY, f"unexpected reply: {detail}")


def _all_refused(refused: Mapping[str, str]) -> SmtpResult:
    detail = "every recipient was refused: " + "; ".join(f"{r}: {why}" for r, why in refused.items())
    temporary = any(why.startswith("4") for why in refused.values())
    return SmtpResult(Delivery.RETRY if temporary else Delivery.FAILED, detail, refused)


def _tls_context(cfg: SmtpConfig) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)


def _raise_if_certificate(exc: BaseException, where: str) -> None:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            raise MailError(
                f"{where}: certificate not trusted: {cause.verify_message}",
                hint="Set ca_file for a self-hosted server; never disable verification.",
            ) from exc
        cause = cause.__cause__ or cause.__context__


def _text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
