"""``followupd init``: known providers from the address, every question as a flag, one interactive run, a
private config that passes ``config check``, no overwriting without --force, and --doctor against real
servers on loopback.
"""

from __future__ import annotations

import stat
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from followupd import config as config_mod
from followupd.cli import cli
from followupd.cli.init_cmd import local_zone
from followupd.errors import UsageError
from tests.servers.plugin import Mailbox
from tests.servers.smtp import SmtpServer

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str | None]:
    """A fresh user: HOME and XDG_* in tmp_path, no $FOLLOWUPD_CONFIG."""
    return {
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "FOLLOWUPD_CONFIG": None,
        "TZ": "Europe/Berlin",
    }


def init(env: dict[str, str | None], *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["init", *args], env=env, input=input)


def written(env: dict[str, str | None]) -> Path:
    return Path(str(env["XDG_CONFIG_HOME"])) / "followupd" / "config.toml"


def refused(result: Result) -> str:
    """The UsageError a command raised (the entry point prints it and exits 2), as text."""
    assert isinstance(result.exception, UsageError), (result.output, result.exception)
    assert result.exception.exit_code == 2
    return str(result.exception)


def read(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def assert_private_and_valid(path: Path, env: dict[str, str | None]) -> None:
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    checked = CliRunner().invoke(cli, ["--config", str(path), "config", "check"], env=env)
    assert checked.exit_code == 0, checked.output
    assert "OK (1 account(s)" in checked.output and "0 warning(s)" in checked.output


def test_gmail_without_questions(env: dict[str, str | None]) -> None:
    result = init(
        env,
        "--email",
        "ada@gmail.com",
        "--name",
        "Ada Lovelace",
        "--password-command",
        "pass show 'mail/gmail app'",
        "--yes",
    )
    assert result.exit_code == 0, result.output
    path = written(env)
    assert f"Wrote {path}" in result.output and "app password" in result.output
    assert_private_and_valid(path, env)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# followupd configuration for ada@gmail.com")
    account = read(path)["accounts"][0]
    assert (account["name"], account["email"], account["display_name"]) == (
        "gmail",
        "ada@gmail.com",
        "Ada Lovelace",
    )
    assert account["imap"] == {
        "host": "imap.gmail.com",
        "port": 993,
        "security": "tls",
        "password_command": ["pass", "show", "mail/gmail app"],
    }
    assert account["smtp"]["host"] == "smtp.gmail.com" and account["smtp"]["port"] == 465
    assert account["smtp"]["security"] == "tls"
    assert read(path)["send"]["timezone"] == "Europe/Berlin"
    assert "Check the logins" not in result.output  # --yes never runs doctor by itself


@pytest.mark.parametrize(
    ("email", "extra", "imap", "smtp"),
    [
        ("me@fastmail.com", (), ("imap.fastmail.com", 993, "tls"), ("smtp.fastmail.com", 465, "tls")),
        (
            "me@outlook.com",
            (),
            ("outlook.office365.com", 993, "tls"),
            ("smtp.office365.com", 587, "starttls"),
        ),
        (
            "me@corp.example",
            ("--provider", "outlook"),
            ("outlook.office365.com", 993, "tls"),
            ("smtp.office365.com", 587, "starttls"),
        ),
        ("me@icloud.com", (), ("imap.mail.me.com", 993, "tls"), ("smtp.mail.me.com", 587, "starttls")),
        (
            "me@example.org",
            (
                "--imap-host",
                "mail.example.org",
                "--smtp-host",
                "mail.example.org",
                "--smtp-security",
                "starttls",
            ),
            ("mail.example.org", 993, "tls"),
            ("mail.example.org", 587, "starttls"),
        ),
        (
            "me@example.org",
            (
                "--provider",
                "other",
                "--imap-host",
                "127.0.0.1",
                "--imap-security",
                "none",
                "--imap-port",
                "1143",
                "--smtp-host",
                "127.0.0.1",
                "--smtp-security",
                "none",
            ),
            ("127.0.0.1", 1143, "none"),
            ("127.0.0.1", 25, "none"),
        ),
    ],
)
def test_known_providers_and_any_server(
    env: dict[str, str | None],
    email: str,
    extra: tuple[str, ...],
    imap: tuple[str, int, str],
    smtp: tuple[str, int, str],
) -> None:
    result = init(env, "--email", email, "--password-env", "MAIL_PW", *extra, "--yes")
    assert result.exit_code == 0, result.output
    account = read(written(env))["accounts"][0]
    for section, (host, port, security) in (("imap", imap), ("smtp", smtp)):
        assert (account[section]["host"], account[section]["port"], account[section]["security"]) == (
            host,
            port,
            security,
        )
        assert account[section]["password_env"] == "MAIL_PW"
    assert_private_and_valid(written(env), env)


def test_refuses_to_overwrite_without_force(env: dict[str, str | None]) -> None:
    assert init(env, "--email", "a@gmail.com", "--yes").exit_code == 0
    path = written(env)
    before = path.read_bytes()
    message = refused(init(env, "--email", "b@gmail.com", "--yes"))
    assert "exists already; nothing was changed" in message
    assert "--force" in message and path.read_bytes() == before
    forced = init(env, "--email", "b@gmail.com", "--yes", "--force")
    assert forced.exit_code == 0, forced.output
    assert read(path)["accounts"][0]["email"] == "b@gmail.com"
    assert_private_and_valid(path, env)
    assert [p.name for p in path.parent.iterdir()] == ["config.toml"]  # no temporary files left


def test_where_it_writes(env: dict[str, str | None], tmp_path: Path) -> None:
    chosen = tmp_path / "elsewhere" / "fu.toml"
    assert init(env, "--email", "a@gmail.com", "--path", str(chosen), "--yes").exit_code == 0
    assert chosen.exists() and not written(env).exists()
    by_option = tmp_path / "by-option.toml"
    result = CliRunner().invoke(
        cli, ["--config", str(by_option), "init", "--email", "a@gmail.com", "--yes"], env=env
    )
    assert result.exit_code == 0 and by_option.exists()
    by_env = tmp_path / "by-env.toml"
    assert init({**env, "FOLLOWUPD_CONFIG": str(by_env)}, "--email", "a@gmail.com", "--yes").exit_code == 0
    assert stat.S_IMODE(by_env.stat().st_mode) == 0o600


def test_password_sources(env: dict[str, str | None], tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    result = init(
        env,
        "--email",
        "a@example.org",
        "--imap-host",
        "mail.example.org",
        "--smtp-host",
        "mail.example.org",
        "--password-file",
        str(secret),
        "--yes",
    )
    assert result.exit_code == 0, result.output
    assert read(written(env))["accounts"][0]["imap"]["password_file"] == str(secret.resolve())
    both = init(
        env, "--email", "a@gmail.com", "--password-env", "X", "--password-file", "y", "--force", "--yes"
    )
    assert "only one of" in refused(both)
    default = init(env, "--email", "a@gmail.com", "--force", "--yes")
    assert read(written(env))["accounts"][0]["smtp"]["password_env"] == "FOLLOWUPD_PASSWORD", default.output
    oauth = init(
        env, "--email", "a@gmail.com", "--oauth2-token-command", "oauth2-token gmail", "--force", "--yes"
    )
    assert oauth.exit_code == 0
    assert read(written(env))["accounts"][0]["imap"]["oauth2_token_command"] == ["oauth2-token", "gmail"]
    assert_private_and_valid(written(env), env)


def test_missing_answers_without_a_terminal(env: dict[str, str | None]) -> None:
    assert "Pass --email" in refused(init(env, "--yes"))
    assert not written(env).exists()
    assert "unknown time zone" in refused(
        init(env, "--email", "a@gmail.com", "--timezone", "Mars/Olympus", "--yes")
    )
    assert not written(env).exists()


def test_interactive(env: dict[str, str | None], tmp_path: Path) -> None:
    answers = [
        "robin@valeworks.example",  # address (an unknown domain, so the provider is asked)
        "Robin Vale",  # name
        "other",  # provider
        "mail.valeworks.example",  # IMAP server
        "tls",  # IMAP security
        "",  # SMTP server: the default, smtp.valeworks.example
        "starttls",  # SMTP security
        "file",  # password source
        str(tmp_path / "secret"),  # the file
        "",  # time zone: the default, from $TZ
        "n",  # run doctor now? no
    ]
    result = init(env, input="\n".join(answers) + "\n")
    assert result.exit_code == 0, result.output
    assert "Who hosts this mailbox?" in result.output and "Check the logins now" in result.output
    account = read(written(env))["accounts"][0]
    assert account["display_name"] == "Robin Vale" and account["name"] == "valeworks"
    assert account["imap"]["host"] == "mail.valeworks.example" and account["imap"]["port"] == 993
    assert (account["smtp"]["host"], account["smtp"]["port"]) == ("smtp.valeworks.example", 587)
    assert account["smtp"]["password_file"] == str(tmp_path / "secret")
    assert read(written(env))["send"]["timezone"] == "Europe/Berlin"
    assert_private_and_valid(written(env), env)


def test_init_then_doctor_against_real_servers(
    env: dict[str, str | None], mailbox: Mailbox, smtp_factory: Callable[..., SmtpServer], tmp_path: Path
) -> None:
    server = smtp_factory(tls="none", auth=(mailbox.user, mailbox.password))
    secret = tmp_path / "pw"
    secret.write_text(mailbox.password, encoding="utf-8")
    secret.chmod(0o600)
    result = init(
        env,
        "--email",
        mailbox.user,
        "--provider",
        "other",
        "--imap-host",
        "127.0.0.1",
        "--imap-port",
        str(mailbox.dovecot.port),
        "--imap-security",
        "none",
        "--smtp-host",
        "127.0.0.1",
        "--smtp-port",
        str(server.port),
        "--smtp-security",
        "none",
        "--password-file",
        str(secret),
        "--yes",
        "--doctor",
    )
    assert result.exit_code == 0, result.output
    assert "OK    imap login [example]" in result.output and "SPECIAL-USE \\Sent" in result.output
    assert "OK    smtp login [example]" in result.output and "All checks passed." in result.output
    assert server.messages == []
    data = Path(str(env["XDG_DATA_HOME"])) / "followupd" / "followupd.db"
    assert stat.S_IMODE(data.stat().st_mode) == 0o600  # doctor created the database, privately
    config = config_mod.load(written(env), env={})
    assert config.accounts[0].imap is not None and config.accounts[0].imap.port == mailbox.dovecot.port


def test_local_zone() -> None:
    assert local_zone({"TZ": "America/Chicago"}) == "America/Chicago"
    assert local_zone({"TZ": ":Asia/Tokyo"}) == "Asia/Tokyo"
    assert local_zone({"TZ": "Nowhere/Special"}) != "Nowhere/Special"
