"""``followupd plan`` and ``followupd drafts list`` through click's CliRunner, on a scanned Maildir."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from followupd.cli import COMMANDS, cli
from tests.test_plan_engine import ADA, BOB, CAROL, DAN, EVE, Mailbox, build_world, write_config

NOW = "2024-04-01T09:00:00+00:00"


@pytest.fixture
def run(tmp_path: Path, database_url: str) -> Callable[..., Result]:
    build_world(Mailbox(tmp_path / "Maildir"))
    config = write_config(tmp_path, database_url)
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        result = runner.invoke(
            cli, ["--config", str(config), "--now", NOW, *args], env={"FOLLOWUPD_CONFIG": ""}
        )
        assert result.exit_code == 0, (result.output, result.exception)
        return result

    invoke("scan")
    return invoke


def test_plan_json_then_drafts_list_json(run: Callable[..., Result]) -> None:
    preview = json.loads(run("plan", "--dry-run", "--json").stdout)
    assert preview["dry_run"] is True
    assert {d["contact"] for d in preview["queued"]} == {ADA, BOB, CAROL, EVE}
    assert json.loads(run("drafts", "list", "--json").stdout) == []  # the dry run wrote nothing

    planned = json.loads(run("plan", "--json").stdout)
    reasons = {d["contact"]: d["reason"] for d in planned["queued"]}
    assert reasons[CAROL] == "awaiting_reply" and reasons[ADA] == "new_contact"
    assert DAN not in reasons
    assert all(isinstance(d["id"], int) for d in planned["queued"])

    drafts = json.loads(run("drafts", "list", "--json").stdout)
    assert len(drafts) == 4
    for draft in drafts:
        for name in (
            "id",
            "contact",
            "to",
            "subject",
            "body",
            "reason",
            "state",
            "scheduled_at",
            "why",
            "lint",
        ):
            assert name in draft
        assert draft["state"] == "queued"
        assert {item["code"] for item in draft["lint"]} <= {"empty-slot"}

    again = json.loads(run("plan", "--json").stdout)
    assert again["queued"] == [] and again["superseded"] == []


def test_drafts_list_filters_and_table(run: Callable[..., Result]) -> None:
    run("plan")
    only = json.loads(run("drafts", "list", "--contact", CAROL, "--json").stdout)
    assert [d["contact"] for d in only] == [CAROL]
    kit = json.loads(run("drafts", "list", "--reason", "keep_in_touch", "--json").stdout)
    assert {d["contact"] for d in kit} == {BOB, EVE}
    assert json.loads(run("drafts", "list", "--state", "approved", "--json").stdout) == []
    table = run("drafts", "list", "--state", "queued", "--state", "approved").stdout
    lines = table.strip().splitlines()
    assert len(lines) == 4 and all(len(line.split("\t")) == 7 for line in lines)  # piped: tab-separated


def test_plan_text_output(run: Callable[..., Result]) -> None:
    text = run("plan", "--dry-run").stdout
    assert "would queue" in text and CAROL in text
    assert "4 queued" in run("plan").stdout


@pytest.mark.parametrize(
    "args", [("plan",), ("drafts",), ("drafts", "list")], ids=["plan", "drafts", "drafts-list"]
)
def test_help_has_an_example(args: tuple[str, ...]) -> None:
    assert {"plan", "drafts"} <= set(COMMANDS)
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output
    assert "followupd " in result.output.split("Example", 1)[1]
