"""Mail that arrives while the watcher is between a scan and IDLE is never left for the next poll.

IMAP IDLE only reports changes after it starts, so the watcher compares the folder's UIDNEXT at SELECT with
what it stored, and scans again when they differ — and must check again after that scan, because mail keeps
arriving. Here every INBOX scan is followed, before the watcher can SELECT, by one more message, three times
over; with the poll an hour away, only that re-check can store them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from followupd import config as config_mod
from followupd.daemon.watcher import MAX_RESCANS_BEFORE_IDLE, AccountWatcher
from followupd.engine import scan_imap
from followupd.engine.batch import ScanStats
from followupd.errors import FollowupdError
from followupd.store.db import Database
from tests import mailgen
from tests.servers.plugin import Mailbox

pytestmark = [pytest.mark.dovecot, pytest.mark.timeout(60)]

LATE = 3  # messages that arrive right after a scan, one after each
SETTINGS = '\n[daemon]\npoll_interval = "1h"\nidle_renew = "9m"\n'


class Hooks:
    def __init__(self) -> None:
        self.errors: list[FollowupdError] = []

    def scanned(self, account: str, stats: ScanStats) -> None:
        pass

    def failed(self, account: str, error: FollowupdError) -> None:
        self.errors.append(error)


def late_mail(mailbox: Mailbox, real: Callable[..., Any]) -> tuple[Callable[..., Any], list[str]]:
    """``scan_folder`` that, after each of the first INBOX scans, delivers one more message to INBOX."""
    delivered: list[str] = []
    lock = threading.Lock()

    def scan_folder(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        folder = args[3]
        with lock:
            if folder.name == "INBOX" and len(delivered) < LATE:
                tag = f"late-{len(delivered)}"
                sender = f"late{len(delivered)}@example.net"
                mailbox.dovecot.append(
                    mailbox.user,
                    "INBOX",
                    mailgen.person(sender, mailbox.user, tag, mailgen.at(), tag).render(),
                )
                delivered.append(mailgen.mid(tag))
        return result

    return scan_folder, delivered


def test_mail_arriving_after_each_scan_is_stored_before_idle(
    mailbox: Mailbox, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert LATE < MAX_RESCANS_BEFORE_IDLE
    mailbox.dovecot.write_maildir(
        mailbox.user,
        "INBOX",
        [mailgen.person("first@example.net", mailbox.user, "hi", mailgen.at(), "first").render()],
    )
    text = mailgen.config_toml(
        db.url.render_as_string(hide_password=False),
        mailgen.account_toml("main", mailbox.user, port=mailbox.dovecot.port),
    )
    monkeypatch.setenv("PW", mailbox.password)  # read when the watcher logs in
    config = config_mod.parse(text + SETTINGS)
    scan_folder, delivered = late_mail(mailbox, scan_imap.scan_folder)
    monkeypatch.setattr(scan_imap, "scan_folder", scan_folder)
    hooks = Hooks()
    watcher = AccountWatcher(
        db, config, config.accounts[0], hooks, clock=lambda: datetime.now(mailgen.at().tzinfo)
    )
    watcher.start()
    try:
        deadline = time.monotonic() + 30
        while not (watcher.mode == "idle" and len(delivered) == LATE):
            assert time.monotonic() < deadline, f"watcher is {watcher.mode}, {len(delivered)} delivered"
            time.sleep(0.05)
        time.sleep(0.3)  # settled in IDLE: nothing more arrives, and the poll is an hour away
        assert watcher.mode == "idle"
        stored = mailgen.stored(db)
        assert set(delivered) | {mailgen.mid("first")} <= set(stored), sorted(stored)
        assert hooks.errors == []
    finally:
        watcher.stop()
        assert watcher.join(10)
        watcher.close()
