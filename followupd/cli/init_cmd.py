"""``followupd init``: ask the few things followupd needs and write a commented, private config."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from followupd.cli.app import App, pass_app
from followupd.errors import ConfigError, UsageError
from followupd.providers import PROVIDERS, Provider, for_address, for_host

SECURITY = ("tls", "starttls", "none")
SECRET_KINDS = ("command", "file", "env", "oauth2")
DEFAULT_ENV = "FOLLOWUPD_PASSWORD"
_PORTS = {("imap", "tls"): 993, ("imap", "starttls"): 143, ("imap", "none"): 143}
_PORTS |= {("smtp", "tls"): 465, ("smtp", "starttls"): 587, ("smtp", "none"): 25}


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    security: str


@dataclass(frozen=True)
class Answers:
    """Everything the config is written from."""

    email: str
    display_name: str
    account: str
    provider: Provider | None
    imap: Server
    smtp: Server
    username: str
    secret: tuple[str, str | list[str]]  # (config key, value)
    timezone: str


@click.command()
@click.option("--email", help="Your address in this mailbox.")
@click.option("--name", "display_name", help="Your name, as drafts are signed.")
@click.option("--account", "account", help="Short name for the account (default: from the domain).")
@click.option("--provider", type=click.Choice([*PROVIDERS, "other"]), help="Known settings to use.")
@click.option("--imap-host", help="IMAP server (default: the provider's).")
@click.option(
    "--imap-port", type=click.IntRange(1, 65535), help="IMAP port (default: 993 tls, 143 starttls)."
)
@click.option("--imap-security", type=click.Choice(SECURITY), help="tls, starttls, or none (loopback only).")
@click.option("--smtp-host", help="SMTP server (default: the provider's).")
@click.option(
    "--smtp-port", type=click.IntRange(1, 65535), help="SMTP port (default: 465 tls, 587 starttls)."
)
@click.option("--smtp-security", type=click.Choice(SECURITY), help="tls, starttls, or none (loopback only).")
@click.option("--username", help="Login name, if it is not your address.")
@click.option("--password-command", help='Command printing the password, e.g. "pass show mail/me".')
@click.option(
    "--password-file", type=click.Path(dir_okay=False, path_type=Path), help="File with the password."
)
@click.option("--password-env", help="Environment variable with the password.")
@click.option("--oauth2-token-command", help="Command printing an OAuth2 access token (XOAUTH2).")
@click.option("--timezone", help="IANA time zone of the send window (default: this machine's).")
@click.option("--path", type=click.Path(dir_okay=False, path_type=Path), help="Where to write the config.")
@click.option("--force", is_flag=True, help="Replace an existing config file.")
@click.option("-y", "--yes", is_flag=True, help="Ask nothing: use the flags and defaults.")
@click.option("--doctor/--no-doctor", "run_doctor", default=None, help="Run `followupd doctor` afterwards.")
@pass_app
def init(app: App, /, **options: Any) -> None:
    """Write a config for your mailbox: your address, the servers, and where the password comes from.

    Gmail, Fastmail, Outlook/Microsoft 365 and iCloud are recognised from the address (or --provider);
    for any other server, give the hosts. Passwords never go in the file: followupd gets them from a
    command (a password manager), a file, an environment variable, or an OAuth2 token command. The config
    is written with mode 600 in a directory with mode 700 (default $XDG_CONFIG_HOME/followupd/config.toml,
    or --config / $FOLLOWUPD_CONFIG), never over an existing file without --force, and is checked before
    init says it is done. Every question has a flag, so init can run unattended with --yes.

    \b
    Examples:
      followupd init
      followupd init --email ada@gmail.com --password-command "pass show mail/gmail" --yes
      followupd init --email me@example.org --provider other --imap-host mail.example.org \\
          --smtp-host mail.example.org --smtp-security starttls --password-env MAIL_PW --yes --doctor
    """
    target = target_path(options["path"], app.config_path, os.environ)
    if target.exists() and not options["force"]:
        raise UsageError(
            f"{target} exists already; nothing was changed",
            hint="Pass --force to replace it, or --path to write somewhere else.",
        )
    answers = gather(options, interactive=not options["yes"])
    write_private(target, render(answers), force=options["force"])
    _validate(target)
    click.echo(f"Wrote {target} (mode 600; its directory is private).")
    click.echo("Next: `followupd doctor` checks the logins, then `followupd scan` and `followupd plan`.")
    if _wants_doctor(options):
        _doctor(target)


def target_path(explicit: Path | None, config_option: Path | None, env: Mapping[str, str]) -> Path:
    """--path, else the global --config, else $FOLLOWUPD_CONFIG, else the XDG config location."""
    from followupd.config import candidate_paths

    chosen = (
        explicit or config_option or (Path(env["FOLLOWUPD_CONFIG"]) if env.get("FOLLOWUPD_CONFIG") else None)
    )
    return (chosen or candidate_paths(env)[0]).expanduser()


# ------------------------------------------------------------------------------------------ questions


def gather(options: Mapping[str, Any], *, interactive: bool) -> Answers:
    """The answers from the flags, asking for whatever is missing (or using defaults without a terminal)."""
    email = options["email"] or _ask(interactive, "Your email address", flag="--email")
    if "@" not in email:
        raise UsageError(f"{email!r} is not an email address", hint="Pass --email you@example.org.")
    domain = email.rpartition("@")[2].lower()
    name = options["display_name"]
    if name is None:
        name = click.prompt("Your name, as drafts are signed", default="") if interactive else ""
    provider = _provider(options, email, interactive=interactive)
    if provider is not None:
        click.echo(f"Using the settings for {provider.name}. {provider.password_hint}")
    imap = _server("imap", options, provider, domain, interactive=interactive)
    smtp = _server("smtp", options, provider, domain, interactive=interactive)
    return Answers(
        email=email,
        display_name=name,
        account=options["account"] or (provider.key if provider else domain.split(".")[0]) or "mail",
        provider=provider,
        imap=imap,
        smtp=smtp,
        username=options["username"] or "",
        secret=_secret(options, provider, interactive=interactive),
        timezone=_timezone(options["timezone"], interactive=interactive),
    )


def _ask(interactive: bool, question: str, *, flag: str, default: str | None = None) -> str:
    if interactive:
        answer: str = click.prompt(question, default=default)
        return answer.strip()
    if default is not None:
        return default
    raise UsageError(f"{question}: not given", hint=f"Pass {flag}, or run without --yes to be asked.")


def _provider(options: Mapping[str, Any], email: str, *, interactive: bool) -> Provider | None:
    if options["provider"]:
        return PROVIDERS.get(options["provider"])
    if options["imap_host"]:
        return for_host(options["imap_host"])
    known = for_address(email)
    if known is not None or not interactive:
        return known
    choices = click.Choice([*PROVIDERS, "other"])
    choice: str = click.prompt("Who hosts this mailbox?", type=choices, default="other")
    return PROVIDERS.get(choice)


def _server(
    kind: str, options: Mapping[str, Any], provider: Provider | None, domain: str, *, interactive: bool
) -> Server:
    host, port, security = options[f"{kind}_host"], options[f"{kind}_port"], options[f"{kind}_security"]
    if provider is not None:
        host = host or getattr(provider, f"{kind}_host")
        security = security or getattr(provider, f"{kind}_security")
        port = port or (
            getattr(provider, f"{kind}_port") if security == getattr(provider, f"{kind}_security") else 0
        )
    label = kind.upper()
    host = host or _ask(interactive, f"{label} server", flag=f"--{kind}-host", default=f"{kind}.{domain}")
    if security is None:
        security = (
            click.prompt(f"{label} security", type=click.Choice(SECURITY), default="tls")
            if interactive
            else "tls"
        )
    return Server(host, port or _PORTS[(kind, security)], security)


def _secret(
    options: Mapping[str, Any], provider: Provider | None, *, interactive: bool
) -> tuple[str, str | list[str]]:
    given = [
        (key, options[key])
        for key in ("password_command", "password_file", "password_env", "oauth2_token_command")
        if options[key]
    ]
    if len(given) > 1:
        raise UsageError(
            "give only one of --password-command, --password-file, --password-env, --oauth2-token-command"
        )
    if given:
        return _secret_value(*given[0])
    if not interactive:
        return "password_env", DEFAULT_ENV
    default = "oauth2" if provider is not None and provider.key == "outlook" else "command"
    kind = click.prompt(
        "How does followupd get the password? command (a password manager), file, env, oauth2",
        type=click.Choice(SECRET_KINDS),
        default=default,
    )
    if kind == "command":
        return _secret_value(
            "password_command", click.prompt("Command that prints it", default="pass show mail")
        )
    if kind == "file":
        return _secret_value("password_file", click.prompt("File that holds it (keep it chmod 600)"))
    if kind == "env":
        return "password_env", click.prompt("Environment variable that holds it", default=DEFAULT_ENV)
    return _secret_value("oauth2_token_command", click.prompt("Command that prints an OAuth2 access token"))


def _secret_value(key: str, value: Any) -> tuple[str, str | list[str]]:
    if key.endswith("_command"):
        argv = shlex.split(str(value))
        if not argv:
            raise UsageError(f"--{key.replace('_', '-')} is empty")
        return key, argv
    if key == "password_file":
        return key, str(Path(value).expanduser().resolve())
    return key, str(value)


def _timezone(given: str | None, *, interactive: bool) -> str:
    zone = given or (
        click.prompt("Your time zone", default=local_zone(os.environ))
        if interactive
        else local_zone(os.environ)
    )
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(
            f"unknown time zone {zone!r}", hint="Use an IANA name such as Europe/Berlin."
        ) from None
    return str(zone)


def local_zone(env: Mapping[str, str]) -> str:
    """This machine's IANA zone: $TZ, the /etc/localtime link, /etc/timezone, else UTC."""
    candidates = [env.get("TZ", "").lstrip(":")]
    with contextlib.suppress(OSError):
        candidates.append(os.readlink("/etc/localtime").partition("zoneinfo/")[2])
    with contextlib.suppress(OSError):
        candidates.append(Path("/etc/timezone").read_text(encoding="utf-8").strip())
    for zone in candidates:
        if zone and "/" in zone:
            with contextlib.suppress(ZoneInfoNotFoundError, ValueError):
                ZoneInfo(zone)
                return zone
    return "UTC"


# ------------------------------------------------------------------------------------------- writing


def render(a: Answers) -> str:
    """The config text: commented, only what init was told plus safe defaults."""
    key, value = a.secret
    secret_line = f"{key} = {_toml(value)}"
    where = {
        "password_command": "a command (its first line of output)",
        "password_file": "a file (keep it chmod 600)",
        "password_env": f"the environment variable {value}",
        "oauth2_token_command": "an OAuth2 token command (XOAUTH2)",
    }[key]
    username = f"username = {_toml(a.username)}\n" if a.username else ""
    provider = f" ({a.provider.name})" if a.provider else ""
    hint = f"# {a.provider.password_hint}\n" if a.provider else ""
    return f"""\
# followupd configuration for {a.email}, written by `followupd init`.
# Check it with `followupd config check`, and the logins with `followupd doctor`.
# Every option, with its default, is described in config/followupd.example.toml.
#
# Passwords never go in this file: this one gets it from {where}.
{hint}
[[accounts]]
name = {_toml(a.account)}
email = {_toml(a.email)}
display_name = {_toml(a.display_name)}

# Reading your mail{provider}.
# security: tls (implicit TLS) | starttls (required, never skipped) | none (only for this machine)
[accounts.imap]
host = {_toml(a.imap.host)}
port = {a.imap.port}
security = {_toml(a.imap.security)}
{username}{secret_line}

# Sending the drafts you approve.
[accounts.smtp]
host = {_toml(a.smtp.host)}
port = {a.smtp.port}
security = {_toml(a.smtp.security)}
{username}{secret_line}

[send]
review = true                      # every draft waits for your approval: `followupd review`
transport = "smtp"                 # "outbox" writes .eml files to outbox_dir instead of sending
window = "Mon-Fri 09:00-17:00"     # when approved drafts may go out, in `timezone`
timezone = {_toml(a.timezone)}

# [database]
# url = "sqlite:///..."            # default: $XDG_DATA_HOME/followupd/followupd.db
"""


def write_private(target: Path, text: str, *, force: bool) -> None:
    """Write ``text`` to ``target`` with mode 600, atomically; a new directory gets mode 700. Without
    ``force`` an existing file is never replaced, even one that appeared meanwhile."""
    directory = target.parent
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True)
        directory.chmod(0o700)
    temporary = directory / f".{target.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if force:
            os.replace(temporary, target)
        else:
            try:
                os.link(temporary, target)
            except FileExistsError:
                raise UsageError(
                    f"{target} exists already; nothing was changed", hint="Pass --force."
                ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    if directory.name == "followupd" and directory.stat().st_mode & 0o077:
        click.echo(
            f"warning: {directory} can be read by other users; consider `chmod 700 {directory}`", err=True
        )


def _validate(target: Path) -> None:
    from followupd import config as config_mod

    try:
        config_mod.load(target)
    except ConfigError as exc:  # a bug in init: say so rather than leave a config that does not load
        raise ConfigError(
            f"the config written to {target} does not pass the check",
            problems=exc.problems,
            hint="This is a bug in `followupd init`; please report it. Fix the file by hand meanwhile.",
        ) from None


def _wants_doctor(options: Mapping[str, Any]) -> bool:
    if options["run_doctor"] is not None:
        return bool(options["run_doctor"])
    if options["yes"]:
        return False
    return click.confirm("Check the logins now with `followupd doctor` (nothing is sent)?", default=True)


def _doctor(target: Path) -> None:
    from followupd import doctor
    from followupd.cli.doctor_cmd import show

    click.echo("")
    results = doctor.run(target, os.environ)
    show(results)
    if doctor.failed(results):
        raise click.exceptions.Exit(1)


def _toml(value: str | list[str]) -> str:
    """A TOML string or array of strings (JSON's string escapes are valid TOML)."""
    return json.dumps(value, ensure_ascii=False)
