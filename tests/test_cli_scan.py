"""The CLI around the scanner against a real Dovecot: ``scan``, ``contacts list/show/ignore`` (text and JSON),
``config check`` on a broken file, ``$FOLLOWUPD_CONFIG``, and one run of the real ``followupd`` program.

Most runs go through ``click.testing.CliRunner`` in this process; the subprocess runs prove the console
entry point (``python -m followupd``) and its error handling (no traceback, a non-zero exit).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from followupd.cli import cli
from followupd.errors import NotFoundError
from tests import mailgen
from tests.mailgen import ADA, ALIAS, BOB, BRAND, CAROL, EVE, JOSE, LIST, ZOE, World, at, build_world, named
from tests.servers.plugin import Mailbox

pytestmark = pytest.mark.timeout(60)

NOW = "2024-04-03T09:00:00+00:00"
LATER = "2024-04-04T09:00:00+00:00"
PEOPLE = {ADA, CAROL, ZOE, JOSE, EVE}


def write_config(directory: Path, url: str, port: int, user: str, *, name: str = "config.toml") -> Path:
    path = directory / name
    account = mailgen.account_toml("main", user, port=port, aliases=[ALIAS])
    path.write_text(mailgen.config_toml(url, account))
    path.chmod(0o600)
    return path


@pytest.fixture
def world(mailbox: Mailbox) -> World:
    w = build_world(mailbox.user)
    mailbox.dovecot.write_maildir(mailbox.user, "INBOX", mailgen.render_all(w.inbox))
    mailbox.dovecot.write_maildir(mailbox.user, "Sent", mailgen.render_all(w.sent))
    return w


@pytest.fixture
def config_path(tmp_path: Path, database_url: str, mailbox: Mailbox) -> Path:
    return write_config(tmp_path, database_url, mailbox.dovecot.port, mailbox.user)


class Cli:
    """Runs ``followupd --config <path> --now <time> ...`` in-process with the password in the environment."""

    def __init__(self, config_path: Path, password: str) -> None:
        self.config_path = config_path
        self.env = {"PW": password, "FOLLOWUPD_CONFIG": ""}
        self.runner = CliRunner()

    def __call__(self, *args: str, now: str = NOW, ok: bool = True) -> Result:
        result = self.runner.invoke(
            cli, ["--config", str(self.config_path), "--now", now, *args], env=self.env, catch_exceptions=True
        )
        if ok:
            assert result.exit_code == 0, (result.output, result.exception)
        return result

    def json(self, *args: str, now: str = NOW) -> Any:
        return json.loads(self(*args, "--json", now=now).stdout)


@pytest.fixture
def run(config_path: Path, mailbox: Mailbox) -> Cli:
    return Cli(config_path, mailbox.password)


def rows(output: str) -> list[list[str]]:
    """Tab-separated table rows (the CLI writes tabs when stdout is not a terminal)."""
    return [line.split("\t") for line in output.splitlines() if "\t" in line]


# --------------------------------------------------------------------------------------- scan + contacts


@pytest.mark.dovecot
def test_scan_then_contacts_list_in_text_and_json(run: Cli, world: World) -> None:
    result = run("scan")
    assert f"main: {len(world.all)} new message(s)" in result.stdout
    assert "2 folder(s) scanned" in result.stdout

    listed = rows(run("contacts", "list").stdout)
    assert {r[0] for r in listed} == PEOPLE
    assert listed[0][:2] == [ADA, "Ada Lovelace"]  # most recently in touch first
    assert listed[0][4] == "active reply-owed"
    by_email = {r[0]: r for r in listed}
    assert by_email[ZOE][1] == "Zoë Brüning"
    assert by_email[EVE][2:4] == ["-", "2024-03-06"]  # never wrote; the user wrote on March 6

    data = run.json("contacts", "list")
    assert {c["email"] for c in data} == PEOPLE
    ada = next(c for c in data if c["email"] == ADA)
    for key in ("email", "name", "addresses", "last_inbound_at", "last_outbound_at", "last_touch_at"):
        assert key in ada, key
    assert ada["name"] == "Ada Lovelace"
    assert ada["addresses"] == [ADA]
    assert ada["last_inbound_at"] == at(3).isoformat()
    assert ada["last_outbound_at"] == at(0, 5).isoformat()
    assert ada["last_touch_at"] == at(3).isoformat()
    assert ada["owes_reply"] is True
    assert ada["status"] == "active"


@pytest.mark.dovecot
def test_contacts_list_all_shows_excluded_addresses_with_reasons(run: Cli, world: World) -> None:
    run("scan")

    text = run("contacts", "list", "--all").stdout
    contacts_part, _, excluded_part = text.partition("\n\n")
    assert {r[0] for r in rows(contacts_part)} == PEOPLE
    why = {r[0]: r[2] for r in rows(excluded_part)}
    assert why[BOB] == "unanswered"
    assert why[BRAND] == "only-bulk"
    assert why[LIST] == "list-address"
    assert PEOPLE.isdisjoint(why)

    data = run.json("contacts", "list", "--all")
    excluded = {row["email"]: row for row in data if row.get("excluded")}
    assert excluded[BOB]["reason"] == "unanswered"
    assert excluded[BOB]["name"] == "Bob Cold"
    assert excluded[LIST]["reason"] == "list-address"
    assert {row["email"] for row in data if not row.get("excluded")} == PEOPLE


@pytest.mark.dovecot
def test_contacts_show_one_contact_and_explain_a_non_contact(run: Cli, world: World) -> None:
    run("scan")

    lines = run("contacts", "show", ADA).stdout.splitlines()
    fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    assert fields["email"] == ADA
    assert fields["name"] == "Ada Lovelace"
    assert fields["owes_reply"] == "True"
    assert fields["last_inbound_at"].startswith("2024-03-07T09:00")

    shown = run.json("contacts", "show", "Ada@Example.ORG")  # addresses are case-insensitive
    assert shown["email"] == ADA
    assert shown["last_outbound_at"] == at(0, 5).isoformat()

    refused = run("contacts", "show", BOB, ok=False)
    assert refused.exit_code != 0
    assert isinstance(refused.exception, NotFoundError)
    assert "unanswered" in str(refused.exception)


@pytest.mark.dovecot
def test_ignored_contact_stays_ignored_after_new_mail_and_a_rescan(
    run: Cli, world: World, mailbox: Mailbox
) -> None:
    run("scan")
    assert run("contacts", "ignore", EVE).stdout.strip() == f"{EVE}: ignored"

    news = mailgen.person(named(EVE, "Eve Newman"), mailbox.user, "Re: Introduction", at(20), "eve-1")
    mailbox.dovecot.append(mailbox.user, "INBOX", news.render())
    result = run("scan", now=LATER)
    assert "main: 1 new message(s)" in result.stdout

    eve = run.json("contacts", "show", EVE, now=LATER)
    assert eve["status"] == "ignored"
    assert eve["last_inbound_at"] == at(20).isoformat()  # still tracked, just never drafted for
    assert {r[0]: r[4] for r in rows(run("contacts", "list").stdout)}[EVE].startswith("ignored")

    assert run("contacts", "unignore", EVE).stdout.strip() == f"{EVE}: active"


@pytest.mark.dovecot
def test_scan_json_and_exit_code_when_the_login_is_refused(
    tmp_path: Path, database_url: str, dovecot_factory: Any, world: World, mailbox: Mailbox
) -> None:
    # A private server: a refused login makes Dovecot slow down the next logins from 127.0.0.1.
    other = dovecot_factory()
    other.add_user(mailbox.user, "not-what-we-send")
    run = Cli(write_config(tmp_path, database_url, other.port, mailbox.user), "a-wrong-password")

    result = run("scan", "--json", ok=False)

    assert result.exit_code == 5  # AuthenticationError's exit code
    report = json.loads(result.stdout)
    assert report["accounts"] == []
    assert "refused the login" in report["errors"]["main"]
    assert "a-wrong-password" not in result.output


# ---------------------------------------------------------------------------------------------- config


def test_config_check_lists_every_mistake_with_its_key_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[database]\nurl = "sqlite:///' + str(tmp_path / "db.sqlite") + '"\n\n'
        "[[accounts]]\n"
        'name = "work"\n'
        'email = "me@example.org"\n'
        "[accounts.imap]\n"
        'host = "127.0.0.1"\n'
        'port = "nine-nine-three"\n'  # not a number
        'security = "none"\n'
        'password_env = "PW"\n\n'
        "[scan]\n"
        'meetings = "maybe"\n\n'  # not a boolean
        "[send]\n"
        "daily_capp = 10\n"  # misspelled
    )
    bad.chmod(0o600)

    done = subprocess.run(
        [sys.executable, "-m", "followupd", "--config", str(bad), "config", "check"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "FOLLOWUPD_CONFIG": ""},
    )

    assert done.returncode == 2, done
    err = done.stderr
    assert "accounts[0].imap.port" in err
    assert "expected a whole number" in err
    assert "scan.meetings" in err
    assert "expected true or false" in err
    assert "send.daily_capp" in err
    assert "did you mean 'daily_cap'" in err
    assert "Traceback" not in err + done.stdout


def test_followupd_config_env_var_names_the_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'followupd.sqlite'}"  # the config is checked; no database is opened
    path = write_config(tmp_path, url, 143, "me@example.org", name="from-env.toml")  # never contacted
    runner = CliRunner()

    result = runner.invoke(cli, ["config", "check"], env={"FOLLOWUPD_CONFIG": str(path)})

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{path}: OK (1 account(s): main;")


# ------------------------------------------------------------------------------------- the real program


@pytest.mark.dovecot
def test_the_followupd_program_scans_and_lists(config_path: Path, mailbox: Mailbox, world: World) -> None:
    env = {**os.environ, "PW": mailbox.password, "FOLLOWUPD_CONFIG": str(config_path)}

    def followupd(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "followupd", "--now", NOW, *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env=env,
        )
        assert done.returncode == 0, done
        assert "Traceback" not in done.stderr
        return done

    assert f"main: {len(world.all)} new message(s)" in followupd("scan").stdout
    data = json.loads(followupd("contacts", "list", "--json").stdout)
    assert {c["email"] for c in data} == PEOPLE
    assert mailbox.password not in followupd("-v", "scan").stderr
