"""The reference docs are generated from the code and must not drift from it."""

from __future__ import annotations

from pathlib import Path

from followupd.reference import cli_reference, config_reference

DOCS = Path(__file__).resolve().parents[1] / "docs"
REGENERATE = "run `python -m followupd.reference` and commit docs/"


def test_configuration_reference_is_up_to_date() -> None:
    assert (DOCS / "configuration.md").read_text(encoding="utf-8") == config_reference(), REGENERATE


def test_cli_reference_is_up_to_date() -> None:
    assert (DOCS / "cli-reference.md").read_text(encoding="utf-8") == cli_reference(), REGENERATE


def test_every_config_section_is_documented() -> None:
    text = config_reference()
    for section in (
        "[[accounts]]",
        "[accounts.imap]",
        "[accounts.smtp]",
        "[database]",
        "[scan.admission]",
        "[cadence]",
        "[[cadence.rules]]",
        "[cadence.after_meeting]",
        "[send]",
        "[lint]",
        "[daemon]",
    ):
        assert f"## {section}" in text
