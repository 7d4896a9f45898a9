"""The README's quickstart is exactly two commands, and both work as written."""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def quickstart_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None, "the Quickstart has no ```sh block"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def test_quickstart_is_two_commands_and_the_second_is_what_ci_runs() -> None:
    commands = quickstart_commands()
    assert len(commands) == 2
    assert "followupd demo" in commands[0]
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    test_line = ci.split("# the README's test command\n", 1)[1].splitlines()[0]
    assert test_line.startswith(commands[1])


@pytest.mark.slow
def test_first_quickstart_command_installs_and_runs_the_demo(tmp_path: Path) -> None:
    """Runs the first command verbatim in a fresh virtualenv and a fresh home; the second is this test run."""
    checkout = tmp_path / "followupd"
    shutil.copytree(
        REPO,
        checkout,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "*.egg-info", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"
        ),
    )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # Let the new environment see the packages this one has, so pip resolves the dependencies without
    # downloading them again; followupd itself is built and installed from the copy.
    purelib = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(purelib, "outer.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    home = tmp_path / "home"
    home.mkdir()
    env = {key: value for key, value in os.environ.items() if key.startswith(("PIP_", "SSL_", "REQUESTS_"))}
    env.update({
        "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local/share"), "TMPDIR": str(tmp_path), "PIP_NO_INPUT": "1",
    })  # fmt: skip
    done = subprocess.run(
        ["bash", "-c", quickstart_commands()[0]],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "followupd demo" in done.stdout
    for kind in ("new_contact", "after_meeting", "awaiting_reply", "keep_in_touch"):
        assert kind in done.stdout
    assert not (home / ".config" / "followupd").exists()
