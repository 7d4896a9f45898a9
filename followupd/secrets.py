"""Fetching passwords and tokens at run time from a command, a file, an environment variable or a systemd
credential. Secrets are never read from the config file and never logged."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from followupd.config import Credentials
from followupd.errors import SecretError
from followupd.logs import register_secret

COMMAND_TIMEOUT_S = 30


def resolve(creds: Credentials, *, what: str, env: Mapping[str, str] | None = None) -> str:
    """The secret for ``creds`` (``what`` names it in messages, e.g. "accounts[work].imap password")."""
    env = os.environ if env is None else env
    if creds.oauth2_token_command:
        value = _run(creds.oauth2_token_command, what)
    elif creds.password_command:
        value = _run(creds.password_command, what)
    elif creds.password_file is not None:
        value = _read(creds.password_file, what)
    elif creds.password_env:
        value = env.get(creds.password_env, "")
        if not value:
            raise SecretError(
                f"{what}: environment variable {creds.password_env} is not set or empty",
                hint=f"Export {creds.password_env}, or use password_command / password_file.",
            )
    elif creds.password_credential:
        directory = env.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise SecretError(
                f"{what}: $CREDENTIALS_DIRECTORY is not set (not started by systemd with LoadCredential=?)",
                hint="Use password_file outside systemd.",
            )
        value = _read(Path(directory) / creds.password_credential, what)
    else:
        raise SecretError(
            f"{what}: no secret source configured",
            hint="Set password_command, password_file, password_env or password_credential.",
        )
    register_secret(value)
    return value


def _run(argv: tuple[str, ...], what: str) -> str:
    try:
        done = subprocess.run(
            list(argv), capture_output=True, timeout=COMMAND_TIMEOUT_S, check=False, text=True
        )
    except FileNotFoundError:
        raise SecretError(f"{what}: command {argv[0]!r} not found", hint="Check password_command.") from None
    except subprocess.TimeoutExpired:
        raise SecretError(
            f"{what}: command {argv[0]!r} did not finish in {COMMAND_TIMEOUT_S} s",
            hint="Does it wait for input (a pinentry)? Unlock it first.",
        ) from None
    if done.returncode != 0:
        # stderr may say why (a locked store); it cannot contain the secret, which would be on stdout.
        raise SecretError(
            f"{what}: command {argv[0]!r} failed with exit code {done.returncode}:"
            f" {done.stderr.strip()[:200]}"
        )
    value = done.stdout.splitlines()[0].strip() if done.stdout.strip() else ""
    if not value:
        raise SecretError(f"{what}: command {argv[0]!r} printed nothing")
    return value


def _read(path: Path, what: str) -> str:
    try:
        text = path.expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise SecretError(f"{what}: cannot read {path}: {exc.strerror}") from None
    value = text.rstrip("\r\n")
    if not value:
        raise SecretError(f"{what}: {path} is empty")
    return value
