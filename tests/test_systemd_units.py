"""The shipped systemd units: ``systemd-analyze verify`` accepts them (no warning at all), and they keep the
settings the daemon relies on (Type=notify, the watchdog, restart policy, hardening, credentials).

``systemd-analyze verify`` wants the ExecStart binary to exist, so it runs on copies whose
``%h/.local/bin/followupd`` / ``/usr/local/bin/followupd`` point at this environment's ``followupd``.
Without systemd-analyze the verification is skipped, except when CI is set (CI=true), where it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
USER_UNIT = REPO / "systemd" / "followupd.service"
SYSTEM_UNIT = REPO / "systemd" / "followupd-system.service"
INSTALLED = {USER_UNIT: "%h/.local/bin/followupd", SYSTEM_UNIT: "/usr/local/bin/followupd"}


def analyzer() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing (apt-get install systemd); CI is set, so it must exist")
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    return found


def followupd_binary() -> str:
    found = shutil.which("followupd") or str(Path(sys.executable).with_name("followupd"))
    assert Path(found).exists(), "the followupd console script is not installed in this environment"
    return found


def copy_for_verify(unit: Path, directory: Path) -> Path:
    text = unit.read_text()
    assert INSTALLED[unit] in text
    target = directory / unit.name
    target.write_text(text.replace(INSTALLED[unit], followupd_binary()))
    return target


def settings(unit: Path) -> dict[str, list[str]]:
    """key -> every value it is given (keys such as LoadCredential= repeat), over all sections."""
    found: dict[str, list[str]] = {}
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        found.setdefault(key.strip(), []).append(value.strip())
    return found


def verify(unit: Path, tmp_path: Path, *, user: bool) -> subprocess.CompletedProcess[str]:
    command = [analyzer(), *(["--user"] if user else []), "verify", str(copy_for_verify(unit, tmp_path))]
    env = dict(os.environ)
    if user:  # the user manager needs a runtime directory even for verify
        runtime = tmp_path / "runtime"
        runtime.mkdir(mode=0o700)
        env["XDG_RUNTIME_DIR"] = str(runtime)
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env, check=False)


@pytest.mark.parametrize(("unit", "user"), [(USER_UNIT, True), (SYSTEM_UNIT, False)], ids=["user", "system"])
def test_systemd_analyze_verify_is_clean(unit: Path, user: bool, tmp_path: Path) -> None:
    done = verify(unit, tmp_path, user=user)
    assert done.returncode == 0, done.stderr
    # verify exits 0 even for unknown keys or unparsable values; it only warns. Any line about the unit
    # (they are prefixed with its path) is a mistake in it.
    assert unit.name not in done.stderr + done.stdout, done.stderr + done.stdout


def test_verify_would_catch_a_mistake(tmp_path: Path) -> None:
    broken = copy_for_verify(USER_UNIT, tmp_path)
    broken.write_text(broken.read_text().replace("Restart=on-failure", "Restart=sometimes"))
    command = [analyzer(), "verify", str(broken)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert "Failed to parse service restart specifier" in done.stderr, done.stderr


@pytest.mark.parametrize("unit", [USER_UNIT, SYSTEM_UNIT], ids=["user", "system"])
def test_the_daemon_contract(unit: Path) -> None:
    found = settings(unit)
    assert found["Type"] == ["notify"]
    assert found["NotifyAccess"] == ["main"]
    assert found["ExecStart"][0].endswith(" run")
    assert found["ExecStart"][0].startswith(INSTALLED[unit])
    assert found["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert found["Restart"] == ["on-failure"]
    assert set(found["RestartPreventExitStatus"][0].split()) == {"2", "8"}  # bad config, already running
    assert found["WatchdogSec"] == ["120s"]
    assert found["UMask"] == ["0077"]
    for key in ("NoNewPrivileges", "PrivateTmp", "RestrictSUIDSGID", "LockPersonality"):
        assert found[key] == ["yes"], key
    assert found["ProtectSystem"] == ["strict"]


def test_the_user_unit_may_write_only_its_data_directory() -> None:
    found = settings(USER_UNIT)
    assert found["ReadWritePaths"] == ["%h/.local/share/followupd"]
    assert found["WantedBy"] == ["default.target"]


def test_the_system_unit_takes_secrets_as_credentials() -> None:
    found = settings(SYSTEM_UNIT)
    credentials = dict(v.split(":", 1) for v in found["LoadCredential"])
    assert credentials == {
        "config.toml": "/etc/followupd/config.toml",
        "imap-password": "/etc/followupd/credentials/imap-password",
        "smtp-password": "/etc/followupd/credentials/smtp-password",
    }
    assert "--config %d/config.toml" in found["ExecStart"][0]
    assert found["DynamicUser"] == ["yes"]
    assert found["StateDirectory"] == ["followupd"]
    assert "XDG_DATA_HOME=/var/lib" in found["Environment"][0]
    assert found["ProtectHome"] == ["yes"]
    assert found["CapabilityBoundingSet"] == [""]
    assert found["WantedBy"] == ["multi-user.target"]


def test_the_docs_explain_installing_both_units() -> None:
    docs = (REPO / "docs" / "daemon.md").read_text()
    for needle in (
        "systemctl --user enable --now followupd",
        "journalctl --user -u followupd",
        "LoadCredential=",
        "password_credential",
        "followupd status",
        "systemd-analyze verify",
    ):
        assert needle in docs, needle
