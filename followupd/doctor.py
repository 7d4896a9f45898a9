"""``followupd doctor``: is this installation ready? Each check says OK, WARN or FAIL, and what to fix.

The checks, in order: the config (loads, and its warnings); file permissions (config, database, password
files and their directories kept from other users); the database (opens, upgrades, takes a write); per
account, the mail source (IMAP login and folder discovery: INBOX, and Sent by SPECIAL-USE; or the local
Maildir/mbox) and the way out (SMTP: connect with the configured security, EHLO, STARTTLS when configured,
AUTH, QUIT — nothing is ever sent; or the outbox directory).

Credentials never cross in cleartext: STARTTLS is required when configured, and AUTH only goes over an
encrypted connection, except to a loopback server configured with ``security = "none"``.
"""

from __future__ import annotations

import asyncio
import enum
import os
import socket
import ssl
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from aiosmtplib import SMTP, SMTPAuthenticationError, SMTPException

from followupd import config as config_mod
from followupd import providers, secrets
from followupd.config import AccountConfig, Config, Credentials, ServerConfig, SmtpConfig, is_loopback
from followupd.errors import (
    AuthenticationError,
    ConfigError,
    FollowupdError,
    InsecureTransportError,
    SecretError,
)

PRIVATE_BITS = stat.S_IRWXG | stat.S_IRWXO
SENT_FLAG, ALL_FLAG = "\\Sent", "\\All"
SOURCE_HINT = "Set one of password_command, password_file, password_env or oauth2_token_command."


class Status(enum.StrEnum):
    """How a check went. Any FAIL makes ``followupd doctor`` exit non-zero."""

    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class Check:
    """One check's outcome: its name, status, what was found, and (for WARN/FAIL) exactly what to do."""

    name: str
    status: Status
    message: str
    fix: str = ""


def run(config_path: Path | None, env: Mapping[str, str] | None = None) -> list[Check]:
    """Run every check for the config at ``config_path`` (None: the usual search); never raises for a
    problem it can describe. Later checks are left out when the config cannot be loaded."""
    env = os.environ if env is None else env
    results: list[Check] = []
    try:
        path = config_mod.find_config(config_path, env)
    except ConfigError as exc:
        return [Check("config", Status.FAIL, exc.message, exc.hint)]
    config = _load(path, env, results)
    results.append(permissions(path, config))
    if config is None:
        return results
    results.append(database(config))
    for account in config.accounts:
        results.extend(mail_source(account, env))
        results.append(way_out(account, config, env))
    return results


def failed(results: list[Check]) -> bool:
    """True when any check failed."""
    return any(r.status is Status.FAIL for r in results)


# ------------------------------------------------------------------------------------------- config


def _load(path: Path, env: Mapping[str, str], results: list[Check]) -> Config | None:
    try:
        config = config_mod.load(path, env)
    except ConfigError as exc:
        problems = "; ".join(exc.problems) or exc.message
        fix = exc.hint or f"Fix {path}, then run `followupd config check`."
        results.append(Check("config", Status.FAIL, f"{path}: {problems}", fix))
        return None
    names = ", ".join(a.name for a in config.accounts)
    found = f"{path}: {len(config.accounts)} account(s) ({names or 'none'})"
    # The permission warning is reported by the permissions check, with its fix.
    warnings = [w for w in config.warnings if "can be read by other users" not in w]
    if not config.accounts:
        results.append(Check("config", Status.FAIL, found, "Add an [[accounts]] block (`followupd init`)."))
    elif warnings:
        fix = "Fix these in the config; `followupd config check` shows them with their key paths."
        results.append(Check("config", Status.WARN, f"{found}; " + "; ".join(warnings), fix))
    else:
        results.append(Check("config", Status.OK, found))
    return config


# -------------------------------------------------------------------------------------- permissions


def permissions(config_path: Path, config: Config | None) -> Check:
    """Config, database and password files readable only by their owner; FAIL for a readable secret."""
    loose: list[tuple[Path, int, bool]] = []  # (path, wanted mode, is a secret)
    for path, secret in dict(_private_files(config_path, config)).items():
        mode = _mode(path)
        if mode is not None and mode & PRIVATE_BITS:
            wanted = 0o700 if path.is_dir() else 0o600
            loose.append((path, wanted, secret))
    if not loose:
        return Check("permissions", Status.OK, "config, database and secrets are private to their owner")
    found = "; ".join(f"{p} can be read by other users (mode {_mode(p) or 0:o})" for p, _w, _s in loose)
    fix = "Run: " + " && ".join(f"chmod {w:o} {p}" for p, w, _s in loose)
    status = Status.FAIL if any(s for _p, _w, s in loose) else Status.WARN
    return Check("permissions", status, found, fix)


def _private_files(config_path: Path, config: Config | None) -> Iterator[tuple[Path, bool]]:
    yield config_path, False
    if config_path.parent.name == "followupd":  # our own directory, never a home directory
        yield config_path.parent, False
    if config is None:
        return
    database = _sqlite_path(config.database.url)
    if database is not None:
        yield database, False
        if database.parent.name == "followupd":
            yield database.parent, False
    for account in config.accounts:
        for server in (account.imap, account.smtp):
            if server is not None and server.password_file is not None:
                yield server.password_file.expanduser(), True


def _sqlite_path(url: str) -> Path | None:
    from sqlalchemy import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database).expanduser()


def _mode(path: Path) -> int | None:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None


# ----------------------------------------------------------------------------------------- database


def database(config: Config) -> Check:
    """The database opens, is upgraded to this version's schema, and accepts a write (rolled back)."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    from followupd.store.db import Database

    db: Database | None = None
    try:
        db = Database(config.database.url)
        db.upgrade()
        with db.engine.connect() as connection, connection.begin() as transaction:
            connection.execute(text("UPDATE alembic_version SET version_num = version_num"))
            transaction.rollback()
    except FollowupdError as exc:
        return Check("database", Status.FAIL, exc.message, exc.hint or "Check [database] url in the config.")
    except SQLAlchemyError as exc:
        where = db.safe_url if db is not None else "the database"
        message = f"{where} cannot be written: {getattr(exc, 'orig', None) or exc}"
        fix = (
            "Check that the file and its directory belong to you and are writable, and the disk is not full."
        )
        return Check("database", Status.FAIL, message, fix)
    finally:
        if db is not None:
            db.dispose()
    return Check("database", Status.OK, f"{db.safe_url}: schema up to date, writable")


# --------------------------------------------------------------------------------------------- mail


def mail_source(account: AccountConfig, env: Mapping[str, str]) -> list[Check]:
    """The account's local store can be read, or: IMAP logs in and finds INBOX and Sent."""
    if account.imap is None:
        return [_local_source(account)]
    name, imap = f"imap login [{account.name}]", account.imap
    try:
        password = secrets.resolve(imap, what=f"accounts[{account.name}].imap", env=env)
    except SecretError as exc:
        return [Check(name, Status.FAIL, exc.message, exc.hint or SOURCE_HINT)]
    from followupd.mail.imap import ImapSession, translate

    try:
        with ImapSession(imap, password) as session:
            where = f"logged in to {imap.host}:{imap.port} ({_security(imap)}) as {imap.username}"
            with translate("IMAP LIST"):
                listing = session.client.list_folders() if session.client is not None else []
            folders = session.folders(imap.folders)
    except FollowupdError as exc:
        return [Check(name, Status.FAIL, exc.message, _mail_fix(exc, imap, "imap"))]
    return [Check(name, Status.OK, where), _folders(account.name, listing, [f.role for f in folders])]


def _folders(account: str, listing: list[tuple[tuple[bytes, ...], bytes, str]], roles: list[str]) -> Check:
    name = f"imap folders [{account}]"
    flagged = {flag.decode(): folder for flags, _delimiter, folder in listing for flag in flags}
    if "all" in roles:
        return Check(name, Status.OK, f"Gmail: All Mail is {flagged.get(ALL_FLAG)!r} (SPECIAL-USE \\All)")
    if "sent" not in roles:
        fix = (
            "Add the name of your sent-mail folder to [accounts.imap] folders, or your replies are not seen."
        )
        return Check(
            name, Status.WARN, "INBOX found, but no Sent folder (no \\Sent flag, no usual name)", fix
        )
    if SENT_FLAG in flagged:
        return Check(name, Status.OK, f"INBOX, and Sent is {flagged[SENT_FLAG]!r} (SPECIAL-USE \\Sent)")
    return Check(
        name, Status.OK, "INBOX, and a Sent folder found by its name (the server has no SPECIAL-USE)"
    )


def _local_source(account: AccountConfig) -> Check:
    from followupd.mail.local import open_source

    kind, local = ("maildir", account.maildir) if account.maildir is not None else ("mbox", account.mbox)
    name = f"{kind} [{account.name}]"
    assert local is not None  # config validation: exactly one source per account
    try:
        folders = open_source("maildir" if kind == "maildir" else "mbox", local.path).folders()
    except FollowupdError as exc:
        return Check(name, Status.FAIL, exc.message, exc.hint)
    names = ", ".join(f"{f.name} ({f.role})" for f in folders[:6]) + (" ..." if len(folders) > 6 else "")
    return Check(name, Status.OK, f"{local.path}: {len(folders)} folder(s): {names}")


def way_out(account: AccountConfig, config: Config, env: Mapping[str, str]) -> Check:
    """Where approved drafts go: the outbox directory, or an SMTP login (nothing is sent)."""
    if config.send.transport == "outbox":
        return _outbox(config.send.outbox_dir)
    name = f"smtp login [{account.name}]"
    smtp = account.smtp
    if smtp is None:
        fix = 'Add [accounts.smtp] (`followupd init` writes one), or set [send] transport = "outbox".'
        return Check(name, Status.FAIL, "no [accounts.smtp]: drafts could not be sent", fix)
    try:
        secret = secrets.resolve(smtp, what=f"accounts[{account.name}].smtp", env=env)
        said = asyncio.run(smtp_login(smtp, secret, oauth2=bool(smtp.oauth2_token_command)))
    except SecretError as exc:
        return Check(name, Status.FAIL, exc.message, exc.hint or SOURCE_HINT)
    except FollowupdError as exc:
        return Check(name, Status.FAIL, exc.message, _mail_fix(exc, smtp, "smtp"))
    where = f"{smtp.host}:{smtp.port} ({_security(smtp)})"
    if said:
        return Check(name, Status.WARN, f"{where}: {said}", "Check that this server relays your mail.")
    return Check(name, Status.OK, f"logged in to {where} as {smtp.username}; nothing was sent")


def _outbox(directory: Path | None) -> Check:
    if directory is None:  # the loader always fills it in; kept for a hand-made Config
        return Check("outbox", Status.FAIL, "no outbox_dir", 'Set [send] outbox_dir = "...".')
    existing = next((p for p in (directory, *directory.parents) if p.exists()), None)
    if existing is None or not os.access(existing, os.W_OK | os.X_OK):
        return Check("outbox", Status.FAIL, f"{directory} cannot be created", "Choose a writable outbox_dir.")
    return Check("outbox", Status.OK, f"transport = outbox: approved drafts are written to {directory}")


async def smtp_login(cfg: SmtpConfig, secret: str, *, oauth2: bool = False) -> str:
    """Connect, EHLO, STARTTLS (required when configured), AUTH, QUIT. Returns "" when all went well, or
    what was odd (no AUTH offered); raises the MailError family for failures. Sends no message."""
    where = f"SMTP {cfg.host}:{cfg.port}"
    context = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
    smtp = SMTP(
        hostname=cfg.host,
        port=cfg.port,
        timeout=cfg.timeout.total_seconds(),
        use_tls=cfg.security == "tls",
        start_tls=False,  # never opportunistic: requested explicitly below, and required
        tls_context=context,
    )
    try:
        await _secure(smtp, cfg, where)
        if not smtp.supports_extension("auth"):
            await smtp.execute_command(b"QUIT")
            return "the server does not offer AUTH, so followupd cannot log in"
        try:
            if oauth2:
                await smtp.auth_xoauth2(cfg.username, secret)
            elif "plain" in smtp.server_auth_methods:
                await smtp.auth_plain(cfg.username, secret)
            else:
                await smtp.login(cfg.username, secret)
        except SMTPAuthenticationError as exc:
            raise AuthenticationError(
                f"{where} refused the login for {cfg.username}: {exc.message}"
            ) from None
        await smtp.execute_command(b"QUIT")
    except FollowupdError:  # our own verdicts (no STARTTLS, login refused) are ConnectionErrors too
        raise
    except (SMTPException, OSError) as exc:
        raise _as_mail_error(exc, where) from exc
    finally:
        await _hang_up(smtp)
    return ""


async def _hang_up(smtp: SMTP) -> None:
    """Drop the connection at once. Not a graceful close: closing TLS waits for the server's close_notify,
    and the event loop of this check ends right afterwards, which would leave the socket open."""
    if isinstance(smtp.transport, asyncio.Transport):
        smtp.transport.abort()
    smtp.close()
    await asyncio.sleep(0)  # let the transport's connection_lost run


async def _secure(smtp: SMTP, cfg: SmtpConfig, where: str) -> None:
    await smtp.connect()
    await smtp.ehlo()
    if cfg.security == "starttls":
        if not smtp.supports_extension("starttls"):
            raise InsecureTransportError(
                f"{where}: server does not offer STARTTLS; refusing to send the password"
            )
        await smtp.starttls()
        await smtp.ehlo()
    encrypted = smtp.get_transport_info("sslcontext") is not None
    if not encrypted and not (cfg.security == "none" and is_loopback(cfg.host)):
        raise InsecureTransportError(
            f"{where}: the connection is not encrypted; refusing to send the password"
        )


def _as_mail_error(exc: BaseException, where: str) -> FollowupdError:
    from followupd.errors import MailError, MailTimeoutError

    if isinstance(exc, TimeoutError) or "timed out" in str(exc).lower():
        return MailTimeoutError(f"{where}: the server did not answer in time")
    return MailError(f"{where}: {exc or type(exc).__name__}")


# ------------------------------------------------------------------------------------------ advice


def _security(server: ServerConfig) -> str:
    return {"tls": "TLS", "starttls": "STARTTLS", "none": "no encryption, loopback"}[server.security]


def _mail_fix(exc: FollowupdError, server: ServerConfig, kind: str) -> str:
    """Exactly what to do about a failed connection or login: the first known cause decides."""
    ports = "993 with tls, 143 with starttls" if kind == "imap" else "465 with tls, 587 with starttls"
    known = providers.for_host(server.host)
    password = known.password_hint if known else "Use the password (or app password) for this server."
    advice: tuple[tuple[type[BaseException], str], ...] = (
        (
            AuthenticationError,
            f"Check the username ({server.username}) and the secret from {_source(server)}. {password}",
        ),
        (
            ConnectionRefusedError,
            f"Nothing is listening on {server.host}:{server.port}: check the host and the port ({ports}),"
            " and that the server is up.",
        ),
        (
            socket.gaierror,
            f"The host name {server.host!r} cannot be resolved: check its spelling and network.",
        ),
        (
            ssl.SSLCertVerificationError,
            "The server's certificate is not trusted: for a self-hosted server set ca_file to its CA"
            " certificate (never turn verification off).",
        ),
        (
            InsecureTransportError,
            f"Use the server's TLS port ({ports}) or make {server.host} offer STARTTLS; a server that stops"
            " offering it may be under a downgrade attack.",
        ),
        (
            TimeoutError,
            f"No answer from {server.host}:{server.port}: check the port ({ports}) and any firewall.",
        ),
        (ssl.SSLError, f"TLS failed: check that security matches the port ({ports})."),
    )
    for cause in _causes(exc):
        for kind_of, text in advice:
            if isinstance(cause, kind_of):
                return text
    return exc.hint or f"Check host, port and security in [accounts.{kind}]."


def _source(creds: Credentials) -> str:
    """Where the secret comes from, in words: "password_file /path", "$VAR", "password_command pass ..."."""
    if creds.password_file is not None:
        return f"password_file {creds.password_file}"
    if creds.password_env:
        return f"password_env ${creds.password_env}"
    for key in ("password_command", "oauth2_token_command"):
        argv: tuple[str, ...] = getattr(creds, key)
        if argv:
            return f"{key} `{' '.join(argv)}`"
    return ", ".join(creds.sources()) or "the password source"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    current: BaseException | None = exc
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__
