"""``followupd meetings list`` and ``followupd meetings show`` through click's CliRunner, on a scanned Maildir
holding one invite of each calendar service and a plain-text coffee arrangement."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from followupd.cli import cli
from followupd.errors import FollowupdError
from tests import meetingmail as mm
from tests.test_meetings_local import ME, deliver, make_maildir

pytestmark = pytest.mark.timeout(60)

NOW_TEXT = mm.NOW.isoformat()


@pytest.fixture
def config_path(tmp_path: Path, database_url: str) -> Path:
    root = make_maildir(tmp_path / "Mail")
    sent = make_maildir(root / ".Sent")
    ask, yes = mm.coffee_thread(ME)
    for raw in [*mm.vendor_invites().values(), ask.render()]:
        deliver(root, raw)
    deliver(sent, yes.render())
    path = tmp_path / "config.toml"
    path.write_text(
        f'[database]\nurl = "{database_url}"\n\n'
        f'[[accounts]]\nname = "main"\nemail = "{ME}"\naliases = ["{mm.SAM}"]\n'
        f'[accounts.maildir]\npath = "{root}"\n'
    )
    path.chmod(0o600)
    assert run(path, "scan").exit_code == 0
    return path


def run(config_path: Path, *args: str) -> Result:
    return CliRunner().invoke(
        cli, ["--config", str(config_path), "--now", NOW_TEXT, *args], env={"FOLLOWUPD_CONFIG": ""}
    )


def listed(config_path: Path, *args: str) -> list[dict[str, Any]]:
    result = run(config_path, "meetings", "list", "--json", *args)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert isinstance(rows, list)
    return rows


def test_list_json_has_the_stable_fields(config_path: Path) -> None:
    rows = listed(config_path)
    assert len(rows) == 6
    for row in rows:
        assert {"id", "uid", "subject", "start_at", "end_at", "status", "source", "attendees"} <= set(row)
        assert all({"email", "name", "partstat"} == set(a) for a in row["attendees"])
    starts = [row["start_at"] for row in rows]
    assert starts == sorted(starts)
    by_uid = {row["uid"]: row for row in rows}
    google = by_uid[mm.GOOGLE_UID]
    assert (google["subject"], google["start_at"], google["end_at"]) == (
        "Coffee: Dana / Sam",
        "2026-03-10T22:00:00+00:00",
        "2026-03-10T22:30:00+00:00",
    )
    assert (google["status"], google["source"]) == ("confirmed", "invite")
    assert {a["email"] for a in google["attendees"]} == {"dana@example.org", mm.SAM}
    coffee = next(row for row in rows if row["source"] == "text")
    assert (coffee["subject"], coffee["status"], coffee["start_at"]) == (
        "Coffee this week?",
        "confirmed",
        "2026-03-12T14:00:00+00:00",
    )
    assert [a["email"] for a in coffee["attendees"]] == [mm.ADA]


def test_list_upcoming_and_the_table(config_path: Path) -> None:
    upcoming = listed(config_path, "--upcoming")
    assert [row["uid"] for row in upcoming] == [mm.APPLE_UID]  # everything else ended before 20 March
    table = run(config_path, "meetings", "list")
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    assert len(lines) == 6  # piped: one tab-separated row per meeting, no header
    assert any("Weekly 1:1 Mia / Sam" in line and "invite (recurring)" in line for line in lines)
    assert any("Coffee this week?" in line and "\ttext\t" in line for line in lines)


def test_show_explains_a_text_meeting(config_path: Path) -> None:
    coffee = next(row for row in listed(config_path) if row["source"] == "text")
    shown = run(config_path, "meetings", "show", str(coffee["id"]))
    assert shown.exit_code == 0, shown.output
    assert "confirmed" in shown.stdout and "2026-03-12 14:00 UTC" in shown.stdout
    assert "they: proposal" in shown.stdout and "you: confirmation" in shown.stdout
    assert mm.ADA in shown.stdout
    data = json.loads(run(config_path, "meetings", "show", str(coffee["id"]), "--json").stdout)
    assert [e["kind"] for e in data["evidence"]] == ["proposal", "confirmation"]
    assert data["state"]["kind"] == "text" and data["counts"] is True


def test_show_an_invite_and_an_unknown_id(config_path: Path) -> None:
    weekly = next(row for row in listed(config_path) if row["uid"] == mm.APPLE_UID)
    data = json.loads(run(config_path, "meetings", "show", str(weekly["id"]), "--json").stdout)
    assert data["rrule"].startswith("FREQ=WEEKLY")
    assert data["state"]["event"]["zone"] == "Europe/Berlin"
    assert data["last_end_at"] == "2026-03-17T09:30:00+00:00"
    text = run(config_path, "meetings", "show", str(weekly["id"])).stdout
    assert "repeats: FREQ=WEEKLY" in text and "mia@example.eu (Mia Muster)  accepted" in text
    missing = run(config_path, "meetings", "show", "999")
    assert isinstance(missing.exception, FollowupdError)
    assert missing.exception.exit_code == 2 and "no meeting 999" in str(missing.exception)


@pytest.mark.parametrize("args", [("meetings",), ("meetings", "list"), ("meetings", "show")])
def test_help_has_an_example(args: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0
    assert "followupd meetings" in result.output.split("Example", 1)[1]
