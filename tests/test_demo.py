"""``followupd demo``: the real pipeline on the shipped sample mailbox, run as a new user would run it (a
subprocess whose HOME and XDG directories are empty), and the sample mailbox itself (generated, shipped,
written so that the scan finds the people, the robots and the meetings it was written for).
"""

from __future__ import annotations

import email
import json
import mailbox
import os
import re
import subprocess
import sys
from datetime import timedelta
from email.header import decode_header, make_header
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from followupd.cli import cli
from followupd.core.arrangements import detect, resolve_thread
from followupd.core.meetings import Method, parse_calendar
from followupd.core.mime import walk_message
from followupd.demo import sample
from followupd.errors import UsageError

pytestmark = pytest.mark.timeout(60)

REASONS = {"new_contact", "after_meeting", "awaiting_reply", "keep_in_touch"}
ROBOTS = {
    "hello@productletter.example",
    "news@typeandpixel.example",
    "notifications@forge.example",
    "no-reply@northbank.example",
    "receipts@payflow.example",
    "tickets@interactionweek.example",
    "guild@lists.dsguild.example",
    "portfolio@valeworks.forge.example",
}
NOT_CONTACTS = ROBOTS | {p.email for p in (sample.KYLE, sample.MARTA, sample.JAMAL, sample.INES)}
EXPECTED = {  # who is due for what at the demo's clock
    sample.TOMAS.email: "new_contact",
    sample.LENA.email: "new_contact",
    sample.DANIEL.email: "awaiting_reply",
    sample.JONAS.email: "keep_in_touch",
    sample.PRIYA.email: "keep_in_touch",
    sample.WEI.email: "keep_in_touch",
    sample.AISHA.email: "after_meeting",
    sample.CHLOE.email: "after_meeting",
}


def section(output: str, start: str, end: str) -> str:
    return output.split(start, 1)[1].split(end, 1)[0]


@pytest.fixture(scope="module")
def fresh_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """``followupd demo`` in a subprocess, as a new user: HOME and every XDG directory empty."""
    root = tmp_path_factory.mktemp("fresh-user")
    dirs = {
        name: root / name.lower()
        for name in ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME", "TMPDIR")
    }
    for path in dirs.values():
        path.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FOLLOWUPD_", "XDG_"))}
    env |= {name: str(path) for name, path in dirs.items()}
    done = subprocess.run(
        [sys.executable, "-m", "followupd", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for name, path in dirs.items():
        if name != "TMPDIR":
            assert list(path.iterdir()) == [], f"the demo wrote into {name}"
    demos = list(dirs["TMPDIR"].iterdir())
    assert len(demos) == 1 and demos[0].name.startswith("followupd-demo-")
    return done.stdout, demos[0]


def test_demo_finds_the_people_and_none_of_the_robots(fresh_run: tuple[str, Path]) -> None:
    output, _ = fresh_run
    people = section(output, "contacts, the real people:", "addresses left out")
    contacts = set(re.findall(r"<([^>]+)>", people))
    assert contacts == {p.email for p in sample.CONTACTS}
    assert not contacts & NOT_CONTACTS
    left_out = section(output, "addresses left out", "2. Meetings")
    assert set(re.findall(r"^\s+(\S+@\S+)\s", left_out, re.MULTILINE)) >= NOT_CONTACTS
    maya = next(line for line in people.splitlines() if sample.MAYA.email in line)
    assert "you owe a reply" in maya


def test_demo_drafts_every_trigger_and_each_gives_first(fresh_run: tuple[str, Path]) -> None:
    output, directory = fresh_run
    plan = section(output, "3. Plan:", "(empty-slot:")
    rows = [line.split() for line in plan.splitlines()[2:] if line.strip()]
    drafted = {row[2]: row[1] for row in rows}
    checks = {row[-1] for row in rows}
    assert checks <= {"empty-slot", "ok"}, plan  # the give-first check: nothing but the slot to fill in
    assert set(drafted) <= set(EXPECTED) and not set(drafted) & {sample.MAYA.email, sample.HENRIK.email}
    assert "The scan recorded no meetings" not in output
    assert drafted == EXPECTED
    assert set(drafted.values()) == REASONS
    meetings = section(output, "2. Meetings:", "3. Plan:")
    for subject in ("Roadmap review", "Design system kickoff", "Catching up"):
        assert subject in meetings
    assert "text" in meetings and "invite" in meetings
    assert (directory / "outbox").is_dir()


def test_demo_sends_to_the_outbox_and_says_how_to_review(fresh_run: tuple[str, Path]) -> None:
    output, directory = fresh_run
    sent = re.findall(r"#(\d+) (\w+) to (\S+): sent -> (\S+\.eml)", output)
    assert sent and all(Path(path).parent == directory / "outbox" for *_, path in sent)
    assert sample.JONAS.email in {to for _id, _reason, to, _path in sent}
    for _id, _reason, to, path in sent:
        message = email.message_from_bytes(Path(path).read_bytes())
        assert (
            message["To"].endswith(to)
            and "[what I can offer" not in message.get_payload(decode=True).decode()
        )
    assert f"export FOLLOWUPD_CONFIG={directory / 'config.toml'}" in output
    assert "followupd review" in output and "followupd drafts list" in output
    listed = CliRunner().invoke(cli, ["--config", str(directory / "config.toml"), "drafts", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    states = {d["id"]: d["state"] for d in json.loads(listed.stdout)}
    assert {states[int(draft_id)] for draft_id, *_ in sent} == {"sent"}
    assert "queued" in states.values()
    # The thank-you after an invitation names the meeting it thanks them for.
    drafts = json.loads(listed.stdout)
    thanks = [d for d in drafts if d["reason"] == "after_meeting" and "aisha" in d["contact"]]
    assert len(thanks) == 1 and '"Roadmap review"' in thanks[0]["body"]


def test_demo_json_in_a_chosen_directory_then_clean(tmp_path: Path) -> None:
    where = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--dir", str(where), "--json", "--clean", "--no-send"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["kept"] is False and not where.exists()
    assert {c["email"] for c in report["contacts"]} == {p.email for p in sample.CONTACTS}
    assert report["sent"] == [] and {d["state"] for d in report["drafts"]} == {"queued"}
    for draft in report["drafts"]:
        assert {item["code"] for item in draft["lint"]} == {"empty-slot"}
    assert {q["reason"] for q in report["queued"]} <= REASONS


def test_demo_refuses_a_directory_in_use(tmp_path: Path) -> None:
    (tmp_path / "something").write_text("mine", encoding="utf-8")
    result = CliRunner().invoke(cli, ["demo", "--dir", str(tmp_path)])
    assert isinstance(result.exception, UsageError) and "not an empty directory" in str(result.exception)
    assert [p.name for p in tmp_path.iterdir()] == ["something"]


# --------------------------------------------------------------------------------------- the sample


def messages() -> list[tuple[email.message.Message, bytes]]:
    box = mailbox.mbox(str(sample.MBOX), create=False)
    try:
        return [(m, m.as_bytes()) for m in box]
    finally:
        box.close()


def test_shipped_mailbox_is_the_generated_one() -> None:
    data = sample.MBOX.read_bytes()
    assert data == sample.build(), "run `python -m followupd.demo.sample` after changing sample.py"
    assert 250 <= data.count(b"\nFrom ") + 1 <= 500 and len(data) < 1_000_000


def test_sample_invites_google_and_outlook_style() -> None:
    invites = [(m, raw) for m, raw in messages() if walk_message(raw)[0]]
    assert len(invites) == 2
    (google, _), (outlook, _) = sorted(invites, key=lambda item: "Invitation" not in item[0]["Subject"])
    assert google.get_content_type() == "multipart/mixed"
    alternative = next(p for p in google.walk() if p.get_content_type() == "multipart/alternative")
    assert "text/calendar" in [p.get_content_type() for p in alternative.get_payload()]
    assert outlook.get_content_type() == "text/calendar" and outlook.get_param("method") == "REQUEST"
    events = {m["Subject"]: parse_calendar(walk_message(raw)[0][0])[0] for m, raw in invites}
    roadmap, kickoff = events[google["Subject"]], events["Design system kickoff"]
    assert roadmap.method is Method.REQUEST and kickoff.method is Method.REQUEST
    assert sample.NOW - roadmap.end_at == timedelta(days=1)  # ended a day before the demo's clock
    assert (
        timedelta(0) < kickoff.start_at - sample.NOW < timedelta(days=2)
    )  # tomorrow: nothing to thank for yet
    assert {a.address.email for a in kickoff.attendees} == {sample.ROBIN.email, sample.HENRIK.email}


def test_sample_coffee_agreed_in_words_is_the_only_text_arrangement() -> None:
    found = []
    for message, raw in messages():
        calendars, text = walk_message(raw)
        automated = message["List-Id"] or message["Auto-Submitted"] or message["Precedence"]
        if calendars or automated or text is None:
            continue
        sent_at = parsedate_to_datetime(message["Date"])
        subject = str(make_header(decode_header(message["Subject"])))
        arrangement = detect(subject, text, sent_at=sent_at)
        if arrangement is not None and arrangement.start_at is not None:
            found.append((sent_at, sample.ROBIN.email in message["From"], arrangement, subject))
    assert {subject.removeprefix("Re: ") for *_, subject in found} == {"Catching up"}
    meeting = resolve_thread([(at, mine, arrangement) for at, mine, arrangement, _s in found])
    assert meeting is not None and meeting.status == "confirmed"
    assert meeting.start_at is not None and timedelta(days=1) < sample.NOW - meeting.start_at < timedelta(
        days=3
    )
