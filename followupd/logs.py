"""Logging set-up, done only by entry points: journald-friendly under systemd, readable in a terminal.

Secrets registered with :func:`register_secret` (and anything that looks like a password or token
assignment) are replaced by ``***`` in every record, whatever logger wrote it.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading

_SECRETS: set[str] = set()
_LOCK = threading.Lock()
_PATTERN = re.compile(r"(?i)(password|passwd|token|secret|authorization)(\s*[=:]\s*)(\S+)")
_AUTH_PATTERN = re.compile(r"(?i)\b(AUTH(?:ENTICATE)?\s+[A-Z0-9_-]+)\s+\S+")
# systemd's sd-daemon priority prefixes, by logging level.
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def register_secret(value: str) -> None:
    """Make sure ``value`` never appears in a log line (passwords, tokens read at run time)."""
    if len(value) >= 4:
        with _LOCK:
            _SECRETS.add(value)


def redact(text: str) -> str:
    """``text`` with every registered secret and every ``password=...``-like value replaced by ``***``."""
    with _LOCK:
        secrets = sorted(_SECRETS, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, "***")
    text = _AUTH_PATTERN.sub(lambda m: f"{m.group(1)} ***", text)
    return _PATTERN.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)


class RedactingFilter(logging.Filter):
    """Renders each record's message once, redacted, so no handler can see the secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class JournalFormatter(logging.Formatter):
    """``<priority>logger: message`` — journald adds the time and reads the priority prefix."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        priority = _PRIORITY.get(record.levelno, 6)
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines())


def under_journald() -> bool:
    """True when stderr is connected to the journal (systemd sets JOURNAL_STREAM)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    if not stream:
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return stream == f"{st.st_dev}:{st.st_ino}"


def configure(verbosity: int = 0) -> None:
    """Configure the root logger for an entry point: WARNING by default, INFO with -v, DEBUG with -vv."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    if under_journald():
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Library chatter (imapclient protocol lines, alembic steps) only at -vv.
    for noisy in ("imapclient", "alembic", "aiosmtplib", "mail.log", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbosity >= 3 else logging.WARNING)
