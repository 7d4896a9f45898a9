"""followupd's configuration: TOML in, frozen typed dataclasses out.

The dataclasses below are the specification of the file: types, defaults and descriptions live on the fields
(see :mod:`followupd.tomlspec`), and the configuration reference in ``docs/`` is generated from them. Nothing
past this module sees a dict.
"""

from __future__ import annotations

import ipaddress
import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from followupd.core.cadence import CadenceRules, Tier, TierRule, Trigger
from followupd.core.lint import LintRules, customized
from followupd.core.window import WindowError, parse_window
from followupd.errors import ConfigError
from followupd.tomlspec import Report, format_duration, load_section, option

SECURITY = ("tls", "starttls", "none")
_DEFAULT_PORTS = {
    "imap": {"tls": 993, "starttls": 143, "none": 143},
    "smtp": {"tls": 465, "starttls": 587, "none": 25},
}


@dataclass(frozen=True, kw_only=True)
class Credentials:
    """Where a password or OAuth2 token comes from. Secrets never live in the file itself."""

    password_command: tuple[str, ...] = option(
        (),
        "Command (an argument list, run without a shell) that prints the password.",
        example='["pass", "show", "mail/imap"]',
    )
    password_file: Path | None = option(None, "File holding the password (trailing newline ignored).")
    password_env: str = option("", "Environment variable holding the password.")
    password_credential: str = option(
        "",
        "Name of a systemd credential (LoadCredential=) holding the password"
        " (read from $CREDENTIALS_DIRECTORY).",
    )
    oauth2_token_command: tuple[str, ...] = option(
        (), "Command printing an OAuth2 access token; when set, XOAUTH2 is used instead of a password."
    )

    def sources(self) -> list[str]:
        """The names of the secret sources that are set."""
        names = (
            "password_command",
            "password_file",
            "password_env",
            "password_credential",
            "oauth2_token_command",
        )
        return [n for n in names if getattr(self, n)]


@dataclass(frozen=True, kw_only=True)
class ServerConfig(Credentials):
    """An IMAP or SMTP server."""

    host: str = option(doc="Server host name.", example='"imap.example.org"')
    port: int = option(
        0,
        "Port; 0 means the usual one for `security` (IMAP 993/143, SMTP 465/587).",
        minimum=0,
        maximum=65535,
    )
    security: str = option(
        "tls", "tls (implicit TLS), starttls (mandatory), none (loopback only).", choices=SECURITY
    )
    username: str = option("", "Login name; defaults to the account's email.")
    timeout: timedelta = option(timedelta(seconds=60), "Socket timeout for every network call.")
    ca_file: Path | None = option(None, "Extra CA certificate (PEM) to trust, for self-hosted servers.")


@dataclass(frozen=True, kw_only=True)
class ImapConfig(ServerConfig):
    """How to read the mailbox over IMAP."""

    folders: tuple[str, ...] = option((), "Extra folders to scan besides INBOX and Sent (All Mail on Gmail).")
    batch_size: int = option(
        2000, "How many messages' headers to fetch per request.", minimum=50, maximum=10000
    )


@dataclass(frozen=True, kw_only=True)
class SmtpConfig(ServerConfig):
    """How to send over SMTP."""


@dataclass(frozen=True, kw_only=True)
class LocalSource:
    """A local mail store (Maildir or mbox) read instead of IMAP."""

    path: Path = option(doc="Path to the Maildir directory or mbox file.")


@dataclass(frozen=True, kw_only=True)
class AccountConfig:
    """One mailbox: who the user is there and how to reach it."""

    name: str = option(doc="Short name for the account, used in logs and the CLI.", example='"work"')
    email: str = option(doc="The user's address in this account.")
    aliases: tuple[str, ...] = option((), "Other addresses that are also the user.")
    display_name: str = option("", "The user's name as it should appear in drafts.")
    imap: ImapConfig | None = option(None, "IMAP server ([accounts.imap]).")
    maildir: LocalSource | None = option(None, "A Maildir to read instead of IMAP ([accounts.maildir]).")
    mbox: LocalSource | None = option(None, "An mbox file to read instead of IMAP ([accounts.mbox]).")
    smtp: SmtpConfig | None = option(None, "SMTP server for sending ([accounts.smtp]).")

    @property
    def addresses(self) -> frozenset[str]:
        """Every address that is the user, lower-cased."""
        return frozenset(a.lower() for a in (self.email, *self.aliases))


@dataclass(frozen=True, kw_only=True)
class DatabaseConfig:
    """Where followupd keeps what it learned and the drafts it queued."""

    url: str = option(
        "",
        "SQLAlchemy URL; default sqlite:///$XDG_DATA_HOME/followupd/followupd.db.",
        example='"postgresql+psycopg://followupd@db/followupd"',
    )


@dataclass(frozen=True, kw_only=True)
class AdmissionConfig:
    """Which addresses become contacts. The user's own, list, role and bulk-only addresses never do."""

    user_wrote_to: bool = option(True, "Anyone the user wrote to directly (To/Cc of the user's own mail).")
    answered: bool = option(True, "Anyone who wrote to the user directly and was answered.")
    wrote_directly: bool = option(False, "Anyone who wrote to the user directly, even if never answered.")
    meeting_attendees: bool = option(True, "Organizers and attendees of meetings the user was invited to.")


@dataclass(frozen=True, kw_only=True)
class ScanConfig:
    """How mail is read."""

    admission: AdmissionConfig = option(
        factory=AdmissionConfig, doc="[scan.admission]: who counts as a contact."
    )
    meetings: bool = option(True, "Learn meetings from invites and plain-text arrangements.")


@dataclass(frozen=True, kw_only=True)
class TriggerConfig:
    """One follow-up trigger."""

    enabled: bool = option(True, "Whether this trigger queues drafts.")
    delay: timedelta = option(timedelta(days=3), "How long after the triggering event the draft is due.")
    max_nudges: int = option(1, "awaiting_reply only: nudges per unanswered message.", minimum=0, maximum=5)


@dataclass(frozen=True, kw_only=True)
class TierRuleConfig:
    """Assign a tier to contacts matching an address, a domain or a tag."""

    tier: str = option(doc="Tier name (a key of [cadence.tiers]).")
    address: str = option("", "Exact address to match.")
    domain: str = option("", "Domain to match (example.org matches a@example.org).")
    tag: str = option("", "Contact tag to match.")


@dataclass(frozen=True, kw_only=True)
class CadenceConfig:
    """How often to keep in touch, and which events queue a follow-up."""

    default: timedelta = option(timedelta(days=90), "Keep-in-touch interval for contacts with no tier.")
    tiers: dict[str, timedelta] = option(
        factory=lambda: {
            "close": timedelta(days=30),
            "regular": timedelta(days=90),
            "distant": timedelta(days=180),
        },
        doc='Named intervals, e.g. close = "30d".',
    )
    rules: tuple[TierRuleConfig, ...] = option(
        (), "[[cadence.rules]]: tier assignment by address, domain or tag."
    )
    new_contact: TriggerConfig = option(
        factory=lambda: TriggerConfig(delay=timedelta(days=3)),
        doc="A new person appeared and the conversation stopped.",
    )
    after_meeting: TriggerConfig = option(
        factory=lambda: TriggerConfig(delay=timedelta(hours=12)), doc="A meeting ended: thank-you-and-give."
    )
    awaiting_reply: TriggerConfig = option(
        factory=lambda: TriggerConfig(delay=timedelta(days=5)),
        doc="The user asked something and nobody answered.",
    )
    keep_in_touch: TriggerConfig = option(
        factory=lambda: TriggerConfig(delay=timedelta(0)),
        doc="The last touch is older than the contact's cadence.",
    )
    max_new_per_day: int = option(5, "At most this many new drafts a day.", minimum=1, maximum=1000)
    max_new_per_week: int = option(20, "At most this many new drafts a week.", minimum=1, maximum=5000)
    jitter: timedelta = option(timedelta(days=2), "Spread due dates over this much time.")

    def core_rules(self) -> CadenceRules:
        """These settings as the pure planner's :class:`~followupd.core.cadence.CadenceRules`."""

        def trigger(config: TriggerConfig) -> Trigger:
            return Trigger(enabled=config.enabled, delay=config.delay, max_nudges=config.max_nudges)

        return CadenceRules(
            default_interval=self.default,
            tiers={name: Tier(name, interval) for name, interval in self.tiers.items()},
            rules=tuple(
                TierRule(rule.tier, rule.address or None, rule.domain or None, rule.tag or None)
                for rule in self.rules
            ),
            new_contact=trigger(self.new_contact),
            after_meeting=trigger(self.after_meeting),
            awaiting_reply=trigger(self.awaiting_reply),
            keep_in_touch=trigger(self.keep_in_touch),
            max_new_per_day=self.max_new_per_day,
            max_new_per_week=self.max_new_per_week,
            jitter=self.jitter,
        )


@dataclass(frozen=True, kw_only=True)
class SendConfig:
    """When and how approved drafts go out."""

    review: bool = option(True, "Drafts wait for approval. false: approved automatically after `hold`.")
    hold: timedelta = option(
        timedelta(hours=24), "With review = false, how long a draft waits before it may go."
    )
    transport: str = option(
        "smtp", "smtp sends; outbox writes .eml files to outbox_dir instead.", choices=("smtp", "outbox")
    )
    outbox_dir: Path | None = option(
        None, "Directory for the outbox transport; default $XDG_DATA_HOME/followupd/outbox."
    )
    window: str = option("Mon-Fri 09:00-17:00", "When mail may go out, in `timezone`.")
    timezone: str = option("UTC", 'IANA time zone of the send window, e.g. "Europe/Berlin".')
    recipient_timezone: bool = option(
        False, "Use the window in the recipient's time zone, learned from their mail."
    )
    holidays: tuple[str, ...] = option((), "Dates (YYYY-MM-DD) on which nothing is sent.")
    daily_cap: int = option(
        40,
        "At most this many sends a day from each account (providers limit each mailbox).",
        minimum=1,
        maximum=2000,
    )
    per_minute: int = option(5, "At most this many sends a minute from each account.", minimum=1, maximum=60)
    max_attempts: int = option(
        5, "Attempts for temporary failures before a draft is FAILED.", minimum=1, maximum=20
    )
    drafts_folder: bool = option(False, "Also place queued drafts in the account's Drafts folder.")


@dataclass(frozen=True, kw_only=True)
class TemplatesConfig:
    """Draft templates."""

    dir: Path | None = option(None, "Directory whose templates override or add to the shipped ones.")


@dataclass(frozen=True, kw_only=True)
class LintConfig:
    """The give-first check run on every draft (it warns, it never blocks)."""

    extra_pitch_phrases: tuple[str, ...] = option((), "More phrases to flag as a pitch.")
    allowed_phrases: tuple[str, ...] = option((), "Shipped phrases not to flag.")
    max_words: int = option(150, "Warn above this many words.", minimum=20, maximum=2000)

    def core_rules(self) -> LintRules:
        """These settings applied to the shipped :class:`~followupd.core.lint.LintRules`."""
        return customized(
            LintRules(),
            extra_pitch_phrases=self.extra_pitch_phrases,
            allowed_phrases=self.allowed_phrases,
            max_words=self.max_words,
        )


@dataclass(frozen=True, kw_only=True)
class DaemonConfig:
    """The background service."""

    poll_interval: timedelta = option(timedelta(minutes=5), "How often folders without IDLE are polled.")
    plan_interval: timedelta = option(
        timedelta(minutes=15), "How often the planner runs besides after scans."
    )
    idle_renew: timedelta = option(timedelta(minutes=9), "IDLE is re-issued this often (at most 10 minutes).")
    lease: timedelta = option(
        timedelta(seconds=60),
        "PostgreSQL with several workers: how long a worker's claim on an account lasts without renewal"
        " (renewed every third of it; a dead worker's accounts are taken over after at most this long)."
        " From 2s to 1h.",
    )


LEASE_MIN = timedelta(seconds=2)
LEASE_MAX = timedelta(hours=1)


@dataclass(frozen=True, kw_only=True)
class Config:
    """The whole configuration."""

    accounts: tuple[AccountConfig, ...] = option((), "[[accounts]]: the mailboxes to read.")
    database: DatabaseConfig = option(factory=DatabaseConfig, doc="[database]")
    scan: ScanConfig = option(factory=ScanConfig, doc="[scan]")
    cadence: CadenceConfig = option(factory=CadenceConfig, doc="[cadence]")
    send: SendConfig = option(factory=SendConfig, doc="[send]")
    templates: TemplatesConfig = option(factory=TemplatesConfig, doc="[templates]")
    lint: LintConfig = option(factory=LintConfig, doc="[lint]")
    daemon: DaemonConfig = option(factory=DaemonConfig, doc="[daemon]")
    path: Path | None = None
    warnings: tuple[str, ...] = ()

    def account(self, name: str) -> AccountConfig:
        """The account called ``name``; ConfigError if there is none."""
        for acc in self.accounts:
            if acc.name == name:
                return acc
        raise ConfigError(
            f"no account named {name!r}", hint=f"Accounts: {', '.join(a.name for a in self.accounts)}"
        )


def data_home(env: Mapping[str, str]) -> Path:
    """$XDG_DATA_HOME/followupd (default ~/.local/share/followupd)."""
    base = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".local" / "share")
    return Path(base) / "followupd"


def candidate_paths(env: Mapping[str, str]) -> list[Path]:
    """Where a config is looked for when neither --config nor $FOLLOWUPD_CONFIG names one, in order."""
    config_home = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".config")
    return [Path(config_home) / "followupd" / "config.toml", Path("/etc/followupd/config.toml")]


def find_config(explicit: Path | None, env: Mapping[str, str]) -> Path:
    """The config file to use: ``--config``, then $FOLLOWUPD_CONFIG, then the XDG and /etc locations."""
    if explicit is not None:
        return explicit
    if env.get("FOLLOWUPD_CONFIG"):
        return Path(env["FOLLOWUPD_CONFIG"])
    for path in candidate_paths(env):
        if path.exists():
            return path
    looked = ", ".join(str(p) for p in candidate_paths(env))
    raise ConfigError(
        "no configuration file found",
        hint=f"Looked in: {looked}. Create one with `followupd init`, or pass --config PATH "
        "(config/followupd.example.toml is a commented example).",
    )


def load(path: Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the config at ``path``; ConfigError lists every problem found, with key paths."""
    env = os.environ if env is None else env
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} does not exist", hint="Check the path, or run `followupd init`."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    return parse(text, path=path, env=env)


def parse(text: str, *, path: Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Validate TOML text into a Config (see :func:`load`)."""
    env = os.environ if env is None else env
    where = str(path) if path else "config"
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{where} is not valid TOML: {exc}", hint="Fix the syntax at the line shown."
        ) from None
    report = Report()
    config = load_section(Config, raw, "", report)
    if config is not None:
        _check_semantics(config, report)
    if path is not None:
        _check_permissions(path, report)
    if report.problems or config is None:
        raise ConfigError(
            f"{where} has {len(report.problems)} problem(s):",
            problems=[*report.problems, *(f"warning: {w}" for w in report.warnings)],
            hint="Fix them and run `followupd config check` again.",
        )
    return _finish(config, path, env, report)


def _finish(config: Config, path: Path | None, env: Mapping[str, str], report: Report) -> Config:
    url = config.database.url or f"sqlite:///{data_home(env) / 'followupd.db'}"
    outbox = config.send.outbox_dir or data_home(env) / "outbox"
    accounts = tuple(_with_port_defaults(a) for a in config.accounts)
    return replace(
        config,
        accounts=accounts,
        database=replace(config.database, url=url),
        send=replace(config.send, outbox_dir=outbox),
        path=path,
        warnings=tuple(report.warnings),
    )


def _with_port_defaults(account: AccountConfig) -> AccountConfig:
    imap, smtp = account.imap, account.smtp
    if imap is not None:
        imap = replace(
            imap,
            port=imap.port or _DEFAULT_PORTS["imap"][imap.security],
            username=imap.username or account.email,
        )
    if smtp is not None:
        smtp = replace(
            smtp,
            port=smtp.port or _DEFAULT_PORTS["smtp"][smtp.security],
            username=smtp.username or account.email,
        )
    return replace(account, imap=imap, smtp=smtp)


def _check_semantics(config: Config, report: Report) -> None:
    names: set[str] = set()
    for index, account in enumerate(config.accounts):
        path = f"accounts[{index}]"
        if account.name in names:
            report.problem(f"{path}.name", f"duplicate account name {account.name!r}")
        names.add(account.name)
        if "@" not in account.email:
            report.problem(f"{path}.email", f"expected an email address, got {account.email!r}")
        sources = [s for s in ("imap", "maildir", "mbox") if getattr(account, s) is not None]
        if len(sources) != 1:
            report.problem(
                path,
                "needs exactly one of [accounts.imap], [accounts.maildir], [accounts.mbox]"
                f" (found {len(sources)})",
            )
        for kind in ("imap", "smtp"):
            server = getattr(account, kind)
            if server is not None:
                _check_server(server, f"{path}.{kind}", report)
    _check_cadence(config.cadence, report)
    _check_send(config.send, report)
    if not LEASE_MIN <= config.daemon.lease <= LEASE_MAX:
        report.problem(
            "daemon.lease",
            f"expected a duration from 2s to 1h, got {format_duration(config.daemon.lease)}",
        )


def _check_server(server: ServerConfig, path: str, report: Report) -> None:
    if server.security == "none" and not is_loopback(server.host):
        report.problem(
            f"{path}.security",
            f"'none' is only allowed for a loopback host, not {server.host!r}; use 'tls' or 'starttls'",
        )
    if len(server.sources()) > 1:
        report.problem(path, f"set only one of {', '.join(server.sources())}")
    if not server.sources():
        report.problem(
            path,
            "needs a secret source: password_command, password_file, password_env,"
            " password_credential or oauth2_token_command",
        )


def _check_cadence(cadence: CadenceConfig, report: Report) -> None:
    for index, rule in enumerate(cadence.rules):
        path = f"cadence.rules[{index}]"
        if rule.tier not in cadence.tiers:
            report.problem(f"{path}.tier", f"unknown tier {rule.tier!r}; known: {', '.join(cadence.tiers)}")
        if sum(bool(x) for x in (rule.address, rule.domain, rule.tag)) != 1:
            report.problem(path, "set exactly one of address, domain, tag")


def _check_send(send: SendConfig, report: Report) -> None:
    try:
        parse_window(send.window)
    except WindowError as exc:
        report.problem("send.window", str(exc))
    try:
        ZoneInfo(send.timezone)
    except (KeyError, ValueError):
        report.problem(
            "send.timezone", f"unknown time zone {send.timezone!r}; use an IANA name like 'Europe/Berlin'"
        )
    for index, day in enumerate(send.holidays):
        try:
            date.fromisoformat(day)
        except ValueError:
            report.problem(f"send.holidays[{index}]", f"expected a date YYYY-MM-DD, got {day!r}")


def _check_permissions(path: Path, report: Report) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        report.warn(
            "", f"{path} can be read by other users (mode {stat.S_IMODE(mode):o}); run `chmod 600 {path}`"
        )


def is_loopback(host: str) -> bool:
    """True for localhost and 127.0.0.0/8 / ::1 addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
