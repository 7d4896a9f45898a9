"""The CLI shell: help with an example on every command, --version, errors as messages with exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from followupd import __version__
from followupd.cli import cli, main

REPO = Path(__file__).resolve().parents[1]


def _all_commands(
    group: click.Group, ctx: click.Context, prefix: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    found = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        found.append((*prefix, name))
        if isinstance(command, click.Group):
            found += _all_commands(command, ctx, (*prefix, name))
    return found


COMMANDS = _all_commands(cli, click.Context(cli))


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output
    assert "followupd " in result.output.split("Example", 1)[1]


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_python_dash_m_and_example_config_check() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "followupd",
            "--config",
            str(REPO / "config" / "followupd.example.toml"),
            "config",
            "check",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "OK (1 account(s): work" in done.stdout


def test_errors_become_messages_and_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[send]\nreview = 'maybe'\n")
    with pytest.raises(SystemExit) as info:
        main(["--config", str(bad), "config", "check"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "send.review: expected true or false" in err
    assert "Traceback" not in err


def test_missing_config_tells_how_to_make_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("FOLLOWUPD_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    if Path("/etc/followupd/config.toml").exists():
        pytest.skip("a system-wide config exists on this machine")
    with pytest.raises(SystemExit) as info:
        main(["config", "check"])
    assert info.value.code == 2
    assert "followupd init" in capsys.readouterr().err


def test_db_upgrade_reports_the_schema(tmp_path: Path, empty_database_url: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[database]\nurl = "{empty_database_url}"\n')
    cfg.chmod(0o600)
    result = CliRunner().invoke(cli, ["--config", str(cfg), "db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "schema empty -> " in result.output
    again = CliRunner().invoke(cli, ["--config", str(cfg), "db", "upgrade"])
    assert "-> " in again.output and "empty" not in again.output
