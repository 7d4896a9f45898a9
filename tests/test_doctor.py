"""``followupd doctor`` against a real Dovecot and aiosmtpd servers that misbehave on purpose: all well, a
wrong password, nothing listening on the port, an SMTP server without STARTTLS (the password is never sent),
an untrusted certificate, a world-readable config or password file, no config at all; and --json.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from click.testing import CliRunner, Result

from followupd import doctor
from followupd.cli import cli
from tests.servers._util import free_port
from tests.servers.plugin import Mailbox
from tests.servers.smtp import SmtpServer

pytestmark = pytest.mark.timeout(60)

SMTP_USER, SMTP_PASSWORD = "robin@example.org", "smtp-secret"


@dataclass
class Setup:
    """A config in ``directory`` (0600) with its own database and password files."""

    directory: Path
    database_url: str

    def secret(self, name: str, value: str) -> Path:
        path = self.directory / name
        path.write_text(value + "\n", encoding="utf-8")
        path.chmod(0o600)
        return path

    def write(self, *, imap: str = "", smtp: str = "", send: str = "") -> Path:
        mbox = self.directory / "mail.mbox"
        mbox.write_bytes(b"")
        source = imap or f'[accounts.mbox]\npath = "{mbox}"\n'
        text = (
            f'[database]\nurl = "{self.database_url}"\n\n[send]\n{send}\n\n'
            f'[[accounts]]\nname = "main"\nemail = "robin@example.org"\n\n{source}\n{smtp}'
        )
        path = self.directory / "config.toml"
        path.write_text(text, encoding="utf-8")
        path.chmod(0o600)
        return path

    def imap(self, box: Mailbox, *, port: int | None = None, password: str | None = None) -> str:
        secret = self.secret("imap-pw", box.password if password is None else password)
        return (
            f'[accounts.imap]\nhost = "127.0.0.1"\nport = {port or box.dovecot.port}\nsecurity = "none"\n'
            f'username = "{box.user}"\npassword_file = "{secret}"\ntimeout = "10s"\n'
        )

    def smtp(self, port: int, security: str, *, password: str = SMTP_PASSWORD, ca: Path | None = None) -> str:
        secret = self.secret("smtp-pw", password)
        return (
            f'[accounts.smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "{security}"\n'
            f'username = "{SMTP_USER}"\npassword_file = "{secret}"\ntimeout = "10s"\n'
            + (f'ca_file = "{ca}"\n' if ca else "")
        )


@pytest.fixture
def setup(tmp_path: Path, database_url: str) -> Setup:
    return Setup(tmp_path, database_url)


@pytest.fixture
def ca_file(tls_ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return path


def run(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config), "doctor", *args])


def lines(result: Result) -> dict[str, str]:
    """check name -> its status line (the fix lines follow their check)."""
    found = {}
    for line in result.output.splitlines():
        status, _, rest = line.partition("  ")
        if status.strip() in ("OK", "WARN", "FAIL"):
            name = rest.strip().split("  ")[0]
            found[name] = line
    return found


def check(config: Path, name: str) -> doctor.Check:
    return next(c for c in doctor.run(config, {}) if c.name == name)


def test_everything_ok_with_dovecot_and_starttls_smtp(
    setup: Setup, mailbox: Mailbox, smtp_factory: Callable[..., SmtpServer], ca_file: Path
) -> None:
    server = smtp_factory(tls="starttls_required", auth=(SMTP_USER, SMTP_PASSWORD))
    config = setup.write(imap=setup.imap(mailbox), smtp=setup.smtp(server.port, "starttls", ca=ca_file))
    result = run(config)
    assert result.exit_code == 0, result.output
    found = lines(result)
    assert set(found) == {
        "config",
        "permissions",
        "database",
        "imap login [main]",
        "imap folders [main]",
        "smtp login [main]",
    }
    assert all(line.startswith("OK") for line in found.values()), result.output
    assert "SPECIAL-USE \\Sent" in found["imap folders [main]"]
    assert "nothing was sent" in found["smtp login [main]"]
    assert server.messages == [] and server.data_attempts == []
    assert [a.tls for a in server.auth_attempts] == [True]
    assert server.auth_attempts[0].succeeded


def test_implicit_tls_smtp_and_an_untrusted_certificate(
    setup: Setup, smtp_factory: Callable[..., SmtpServer], ca_file: Path
) -> None:
    server = smtp_factory(tls="implicit", auth=(SMTP_USER, SMTP_PASSWORD))
    config = setup.write(smtp=setup.smtp(server.port, "tls", ca=ca_file))
    assert check(config, "smtp login [main]").status is doctor.Status.OK
    config = setup.write(smtp=setup.smtp(server.port, "tls"))  # no ca_file: the test CA is not trusted
    failure = check(config, "smtp login [main]")
    assert failure.status is doctor.Status.FAIL
    assert "certificate" in failure.message and "ca_file" in failure.fix
    assert server.cleartext_auth_attempts == 0


def test_wrong_imap_password(setup: Setup, mailbox: Mailbox) -> None:
    config = setup.write(imap=setup.imap(mailbox, password="not-the-password"), send='transport = "outbox"')
    result = run(config)
    assert result.exit_code == 1
    line = lines(result)["imap login [main]"]
    assert line.startswith("FAIL") and "refused the login" in line
    fix = result.output.split(line, 1)[1].splitlines()[1]
    assert "fix:" in fix and mailbox.user in fix and "password_file" in fix
    assert "imap folders [main]" not in lines(result)


def test_wrong_smtp_password(setup: Setup, smtp_factory: Callable[..., SmtpServer], ca_file: Path) -> None:
    server = smtp_factory(tls="starttls_required", auth=(SMTP_USER, SMTP_PASSWORD))
    config = setup.write(smtp=setup.smtp(server.port, "starttls", password="wrong", ca=ca_file))
    failure = check(config, "smtp login [main]")
    assert failure.status is doctor.Status.FAIL and "refused the login" in failure.message
    assert SMTP_USER in failure.fix
    assert [(a.tls, a.succeeded) for a in server.auth_attempts] == [(True, False)]  # tried once, over TLS


def test_nothing_listening_on_the_ports(setup: Setup, mailbox: Mailbox) -> None:
    imap_port, smtp_port = free_port(), free_port()
    config = setup.write(imap=setup.imap(mailbox, port=imap_port), smtp=setup.smtp(smtp_port, "none"))
    result = run(config)
    assert result.exit_code == 1
    found = lines(result)
    assert found["imap login [main]"].startswith("FAIL") and found["smtp login [main]"].startswith("FAIL")
    assert f"Nothing is listening on 127.0.0.1:{imap_port}" in result.output
    assert f"Nothing is listening on 127.0.0.1:{smtp_port}" in result.output
    assert (
        "993 with tls, 143 with starttls" in result.output
        and "465 with tls, 587 with starttls" in result.output
    )


def test_smtp_server_without_starttls_never_gets_the_password(
    setup: Setup, smtp_factory: Callable[..., SmtpServer]
) -> None:
    server = smtp_factory(tls="none", auth=(SMTP_USER, SMTP_PASSWORD))  # offers AUTH, in cleartext
    config = setup.write(smtp=setup.smtp(server.port, "starttls"))
    result = run(config)
    assert result.exit_code == 1
    line = lines(result)["smtp login [main]"]
    assert line.startswith("FAIL")
    assert "server does not offer STARTTLS; refusing to send the password" in line
    assert "downgrade" in result.output
    assert server.auth_attempts == [] and server.cleartext_auth_attempts == 0


def test_cleartext_auth_only_to_a_loopback_server_configured_without_tls(
    setup: Setup, smtp_factory: Callable[..., SmtpServer]
) -> None:
    server = smtp_factory(tls="none", auth=(SMTP_USER, SMTP_PASSWORD))
    config = setup.write(smtp=setup.smtp(server.port, "none"))
    assert check(config, "smtp login [main]").status is doctor.Status.OK
    assert server.cleartext_auth_attempts == 1 and server.messages == []


def test_world_readable_config_is_a_warning_with_the_chmod(setup: Setup) -> None:
    config = setup.write(send='transport = "outbox"')
    config.chmod(0o644)
    result = run(config)
    assert result.exit_code == 0, result.output  # a WARN, not a FAIL: the file holds no secret
    line = lines(result)["permissions"]
    assert line.startswith("WARN") and f"{config} can be read by other users (mode 644)" in line
    assert f"fix: Run: chmod 600 {config}" in result.output
    assert lines(result)["config"].startswith("OK")  # the same warning is not reported twice
    assert lines(result)["outbox"].startswith("OK")


def test_readable_password_file_fails(setup: Setup, mailbox: Mailbox) -> None:
    config = setup.write(imap=setup.imap(mailbox), send='transport = "outbox"')
    (setup.directory / "imap-pw").chmod(0o644)
    result = run(config, "--json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["ok"] is False
    by_name = {c["check"]: c for c in report["checks"]}
    assert by_name["permissions"]["status"] == "FAIL"
    assert by_name["permissions"]["fix"] == f"Run: chmod 600 {setup.directory / 'imap-pw'}"
    assert by_name["imap login [main]"]["status"] == "OK"
    assert set(by_name["config"]) == {"check", "status", "message", "fix"}


def test_missing_config_says_to_run_init(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["doctor"],
        env={"XDG_CONFIG_HOME": str(tmp_path), "FOLLOWUPD_CONFIG": None, "HOME": str(tmp_path)},
    )
    assert result.exit_code == 1
    assert result.output.startswith("FAIL  config") and "followupd init" in result.output


def test_invalid_config_lists_the_problems(setup: Setup) -> None:
    config = setup.write(
        smtp='[accounts.smtp]\nhost = "smtp.example.org"\nsecurity = "none"\npassword_env = "X"\n'
    )
    result = run(config)
    assert result.exit_code == 1
    assert lines(result)["config"].startswith("FAIL")
    assert "accounts[0].smtp.security" in result.output and "database" not in lines(result)


def test_missing_smtp_section_with_the_smtp_transport(setup: Setup) -> None:
    failure = check(setup.write(), "smtp login [main]")
    assert failure.status is doctor.Status.FAIL and 'transport = "outbox"' in failure.fix
