"""Config: the example loads, every problem is reported at once with its key path, defaults fill in."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from followupd import config
from followupd.errors import ConfigError
from followupd.tomlspec import format_duration, parse_duration

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "config" / "followupd.example.toml"

MINIMAL = """
[[accounts]]
name = "work"
email = "Me@Example.org"
[accounts.imap]
host = "imap.example.org"
password_env = "PW"
"""


def problems_of(text: str) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        config.parse(text, env={})
    return info.value.problems


def test_example_config_loads_with_every_section() -> None:
    cfg = config.load(EXAMPLE, env={"HOME": "/home/u"})
    (account,) = cfg.accounts
    assert account.name == "work"
    assert account.imap is not None and account.imap.port == 993 and account.imap.security == "tls"
    assert account.smtp is not None and account.smtp.password_command == ("pass", "show", "mail/smtp")
    assert cfg.send.review is True and cfg.send.transport == "smtp"
    assert cfg.cadence.tiers["close"] == timedelta(days=30)
    assert cfg.cadence.after_meeting.delay == timedelta(hours=12)
    assert [r.tier for r in cfg.cadence.rules] == ["close", "distant"]
    assert not [w for w in cfg.warnings if "unknown key" in w]


def test_three_mistakes_are_reported_together_with_key_paths() -> None:
    text = MINIMAL.replace('password_env = "PW"', 'password_env = "PW"\nport = "993x"') + (
        '[send]\nreview = "maybe"\ntrasnport = "smtp"\n'
    )
    with pytest.raises(ConfigError) as info:
        config.parse(text, env={})
    message = str(info.value)
    assert "accounts[0].imap.port: expected a whole number" in message
    assert "send.review: expected true or false, got the string 'maybe'" in message
    assert "send.trasnport: unknown key, ignored (did you mean 'transport'?)" in message
    assert info.value.exit_code == 2


def test_defaults_fill_in_ports_username_database_and_outbox() -> None:
    cfg = config.parse(MINIMAL, env={"XDG_DATA_HOME": "/data"})
    imap = cfg.accounts[0].imap
    assert imap is not None and imap.port == 993 and imap.username == "Me@Example.org"
    assert cfg.accounts[0].addresses == frozenset({"me@example.org"})
    assert cfg.database.url == "sqlite:////data/followupd/followupd.db"
    assert cfg.send.outbox_dir == Path("/data/followupd/outbox")


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        (
            '[accounts.smtp]\nhost = "smtp.example.org"\nsecurity = "none"\npassword_env = "X"\n',
            "accounts[0].smtp.security: 'none' is only allowed for a loopback host",
        ),
        ('[accounts.smtp]\nhost = "smtp.example.org"\n', "accounts[0].smtp: needs a secret source"),
        ('[accounts.smtp]\nhost = "h"\npassword_env = "X"\npassword_file = "/f"\n', "set only one of"),
        (
            '[accounts.smtp]\nhost = "h"\npassword_env = "X"\nsecurity = "ssl"\n',
            "expected one of 'tls', 'starttls', 'none', got 'ssl'",
        ),
        (
            '[accounts.smtp]\nhost = "h"\npassword_env = "X"\nport = 70000\n',
            "expected a number from 0 to 65535",
        ),
        ('[accounts.maildir]\npath = "/m"\n', "needs exactly one of"),
        ('[send]\nwindow = "weekdays 9-5"\n', "send.window: expected a window like"),
        ('[send]\ntimezone = "Mars/Olympus"\n', "send.timezone: unknown time zone"),
        ('[send]\nholidays = ["2026-13-01"]\n', "send.holidays[0]: expected a date"),
        ('[cadence]\ndefault = "3 fortnights"\n', "cadence.default: expected a duration"),
        ('[[cadence.rules]]\ntier = "vip"\ndomain = "x.org"\n', "cadence.rules[0].tier: unknown tier 'vip'"),
        ('[[cadence.rules]]\ntier = "close"\n', "cadence.rules[0]: set exactly one of address, domain, tag"),
    ],
)
def test_each_semantic_problem_names_its_key(snippet: str, expected: str) -> None:
    problems = problems_of(MINIMAL + snippet)
    assert any(expected in p for p in problems), problems


def test_loopback_allows_plain_imap() -> None:
    text = MINIMAL.replace('host = "imap.example.org"', 'host = "127.0.0.1"\nsecurity = "none"')
    imap = config.parse(text, env={}).accounts[0].imap
    assert imap is not None and imap.port == 143


def test_required_keys_and_wrong_types_in_lists() -> None:
    problems = problems_of('[[accounts]]\nname = "x"\naliases = ["a@b", 3]\n')
    assert "accounts[0].email: is required" in problems
    assert any(p.startswith("accounts[0].aliases[1]: expected a string") for p in problems)


def test_invalid_toml_says_where() -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.parse("[[accounts]\nname=", env={})


def test_search_order(tmp_path: Path) -> None:
    explicit = tmp_path / "explicit.toml"
    env_path = tmp_path / "env.toml"
    xdg = tmp_path / "xdg" / "followupd" / "config.toml"
    xdg.parent.mkdir(parents=True)
    xdg.write_text(MINIMAL)
    assert config.find_config(explicit, {"FOLLOWUPD_CONFIG": str(env_path)}) == explicit
    assert config.find_config(None, {"FOLLOWUPD_CONFIG": str(env_path)}) == env_path
    assert config.find_config(None, {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}) == xdg
    with pytest.raises(ConfigError, match="no configuration file found"):
        config.find_config(None, {"XDG_CONFIG_HOME": str(tmp_path / "none"), "HOME": str(tmp_path)})


def test_world_readable_config_is_warned_about(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(MINIMAL)
    os.chmod(path, 0o644)
    assert any("can be read by other users" in w for w in config.load(path, env={}).warnings)
    os.chmod(path, 0o600)
    assert not config.load(path, env={}).warnings


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "nope.toml", env={})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3d", timedelta(days=3)),
        ("12h", timedelta(hours=12)),
        ("2w", timedelta(weeks=2)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "3", "d", "3 days", "-1d", "1.5h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(text)


@given(st.integers(min_value=0, max_value=10**8))
def test_duration_round_trip(seconds: int) -> None:
    value = timedelta(seconds=seconds)
    assert parse_duration(format_duration(value)) == value
