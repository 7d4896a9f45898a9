"""Secrets come from a command, a file, the environment or a systemd credential, and never reach a log."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from followupd import logs, secrets
from followupd.config import Credentials
from followupd.errors import SecretError


def test_password_command_runs_without_a_shell() -> None:
    creds = Credentials(password_command=(sys.executable, "-c", "print('s3cret-cmd; echo pwned')"))
    assert secrets.resolve(creds, what="t", env={}) == "s3cret-cmd; echo pwned"


def test_password_file_strips_the_newline(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("s3cret-file\n")
    assert secrets.resolve(Credentials(password_file=path), what="t", env={}) == "s3cret-file"


def test_password_env_and_credential(tmp_path: Path) -> None:
    assert secrets.resolve(Credentials(password_env="PW"), what="t", env={"PW": "s3cret-env"}) == "s3cret-env"
    (tmp_path / "imap").write_text("s3cret-cred")
    creds = Credentials(password_credential="imap")
    assert secrets.resolve(creds, what="t", env={"CREDENTIALS_DIRECTORY": str(tmp_path)}) == "s3cret-cred"


@pytest.mark.parametrize(
    ("creds", "env", "message"),
    [
        (Credentials(password_env="PW"), {}, "environment variable PW is not set"),
        (Credentials(password_command=("/nonexistent/pass",)), {}, "not found"),
        (Credentials(password_command=(sys.executable, "-c", "import sys; sys.exit(3)")), {}, "exit code 3"),
        (Credentials(password_command=(sys.executable, "-c", "pass")), {}, "printed nothing"),
        (Credentials(password_file=Path("/nonexistent/pw")), {}, "cannot read"),
        (Credentials(password_credential="x"), {}, "CREDENTIALS_DIRECTORY"),
        (Credentials(), {}, "no secret source"),
    ],
)
def test_secret_failures_say_what_to_fix(creds: Credentials, env: dict[str, str], message: str) -> None:
    with pytest.raises(SecretError, match=message):
        secrets.resolve(creds, what="accounts[work].imap", env=env)


def test_resolved_secrets_are_redacted_from_every_log_line(caplog: pytest.LogCaptureFixture) -> None:
    secrets.resolve(Credentials(password_env="PW"), what="t", env={"PW": "hunter2-very-secret"})
    logger = logging.getLogger("followupd.test")
    logger.addFilter(logs.RedactingFilter())
    with caplog.at_level(logging.INFO):
        logger.info("login with %s failed", "hunter2-very-secret")
        logger.info("password=abc123 token: xyz")
        logger.info("> AUTH PLAIN AHVzZXIAaHVudGVy")
    text = caplog.text
    assert "hunter2-very-secret" not in text
    assert "abc123" not in text and "xyz" not in text
    assert "AHVzZXIAaHVudGVy" not in text and "AUTH PLAIN ***" in text
    assert text.count("***") == 4


def test_journal_format_has_priorities_and_no_timestamps() -> None:
    formatter = logs.JournalFormatter("%(name)s: %(message)s")
    record = logging.LogRecord("followupd", logging.WARNING, __file__, 1, "two\nlines", None, None)
    assert formatter.format(record) == "<4>followupd: two\n<4>lines"


def test_prose_about_passwords_is_not_mangled() -> None:
    hint = "Check the username and password source; for Gmail use an app password or OAuth2."
    assert logs.redact(hint) == hint
