"""Scanning through faults against a real Dovecot: a connection dropped between fetch batches, a crash between
batches and inside a batch's transaction, a refused login and an unreachable server.

The yardstick is always a clean scan of the same mailbox into a second database: after the fault and the
recovery, everything derived (messages and where they are, address counts, threads, contacts, cursors) must
be exactly what the clean scan derives.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select

from followupd import config as config_mod
from followupd.config import Config
from followupd.engine import scan as scan_mod
from followupd.engine.batch import BatchWriter
from followupd.engine.scan import scan_once
from followupd.errors import AuthenticationError, MailError
from followupd.mail.imap import ImapSession
from followupd.store import contacts_refresh
from followupd.store.db import Database
from followupd.store.models import Account, Folder, Message
from tests import mailgen
from tests.mailgen import ALIAS, World, at, build_world, snapshot
from tests.servers._util import free_port
from tests.servers.dovecot import Dovecot
from tests.servers.plugin import DatabaseUrlFactory, Mailbox

pytestmark = [pytest.mark.dovecot, pytest.mark.timeout(60)]

NOW = at(30)
FILLERS = 130  # INBOX holds 140 messages: three fetch batches of at most 50


@pytest.fixture
def reference_db(database_url_factory: DatabaseUrlFactory) -> Iterator[Database]:
    """A second database on the same backend, for a clean scan of the same mailbox to compare with."""
    database = Database(database_url_factory("reference"))
    database.upgrade()
    yield database
    database.dispose()


def seed(server: Dovecot, user: str) -> World:
    world = build_world(user, fillers=FILLERS)
    server.write_maildir(user, "INBOX", mailgen.render_all(world.inbox))
    server.write_maildir(user, "Sent", mailgen.render_all(world.sent))
    return world


def make_config(db: Database, server: Dovecot, user: str, *extra_accounts: str) -> Config:
    main = mailgen.account_toml("main", user, port=server.port, aliases=[ALIAS])
    return config_mod.parse(mailgen.config_toml(str(db.url), main, *extra_accounts), env={})


def clean_scan(db: Database, server: Dovecot, user: str) -> dict[str, object]:
    """Scan the mailbox without any fault into ``db`` and return its snapshot."""
    report = scan_once(db, make_config(db, server, user), now=NOW, sleep=_no_sleep)
    assert report.errors == {}
    return snapshot(db)


def _no_sleep(_seconds: float) -> None:
    raise AssertionError("a clean scan must not back off")


def count_calls(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> Counter[str]:
    """Count calls of ``owner.name`` (a method), keyed by the IMAP user of the session."""
    original = getattr(owner, name)
    counter: Counter[str] = Counter()

    def counting(self: ImapSession, *args: Any, **kwargs: Any) -> Any:
        counter[self.cfg.username] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(owner, name, counting)
    return counter


# ------------------------------------------------------------------------------------- dropped connection


def test_connection_dropped_between_batches_is_retried_and_the_result_is_exact(
    dovecot_factory: Callable[..., Dovecot],
    db: Database,
    reference_db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = dovecot_factory()  # private: this test stops it
    user, password = "drop@example.org", "drop-secret"
    server.add_user(user, password)
    world = seed(server, user)
    monkeypatch.setenv("PW", password)
    config = make_config(db, server, user)

    original_fetch = ImapSession.fetch_headers
    fetches: list[tuple[int, int]] = []

    def fetch_then_die(self: ImapSession, first_uid: int, last_uid: int) -> Any:
        fetches.append((first_uid, last_uid))
        if len(fetches) == 3:  # Sent (one batch) and INBOX's first batch are stored: the server goes away
            server.stop()
        return original_fetch(self, first_uid, last_uid)

    monkeypatch.setattr(ImapSession, "fetch_headers", fetch_then_die)
    connects = count_calls(monkeypatch, ImapSession, "connect")
    delays: list[float] = []

    def sleep(seconds: float) -> None:
        delays.append(seconds)
        assert not server.running
        server.start()  # back on the same port while the scanner waits

    report = scan_once(db, config, now=NOW, sleep=sleep)

    assert report.errors == {}
    [stats] = report.accounts
    assert len(delays) == 1
    assert 0.5 <= delays[0] <= 1.5  # attempt 0: 1 s with ±50 % jitter
    assert connects[user] == 2
    assert stats.messages_new == len(world.all)  # nothing stored twice, nothing lost
    # Sent, INBOX 1, INBOX 2 (dropped), INBOX 2 again, INBOX 3: the retry resumed where the drop happened.
    assert len(fetches) == 5
    assert fetches[3] == fetches[2]
    assert fetches[2][0] == fetches[1][1] + 1
    monkeypatch.undo()
    monkeypatch.setenv("PW", password)
    assert snapshot(db) == clean_scan(reference_db, server, user)
    with db.read() as session:
        account = session.scalar(select(Account))
        assert account is not None
        assert (account.last_error, account.last_scan_at) == (None, NOW)


# ------------------------------------------------------------------------------------------------ crashes


@pytest.mark.parametrize(
    "fault",
    [
        ("between-batches", RuntimeError("power cut")),
        ("between-batches", SystemExit(1)),
        ("inside-transaction", RuntimeError("disk yanked")),
    ],
    ids=["runtime-error-between", "system-exit-between", "runtime-error-in-transaction"],
)
def test_crash_during_a_scan_loses_and_duplicates_nothing(
    mailbox: Mailbox,
    db: Database,
    reference_db: Database,
    monkeypatch: pytest.MonkeyPatch,
    fault: tuple[str, BaseException],
) -> None:
    where, exc = fault
    world = seed(mailbox.dovecot, mailbox.user)
    monkeypatch.setenv("PW", mailbox.password)
    config = make_config(db, mailbox.dovecot, mailbox.user)
    calls = 0
    if where == "between-batches":
        original_write = BatchWriter.write

        def crashing_write(self: BatchWriter, *args: Any, **kwargs: Any) -> tuple[int, int]:
            nonlocal calls
            calls += 1
            if calls == 3:
                raise exc
            return original_write(self, *args, **kwargs)

        monkeypatch.setattr(BatchWriter, "write", crashing_write)
    else:
        original_update = contacts_refresh.update_contacts

        def crashing_update(*args: Any, **kwargs: Any) -> int:
            nonlocal calls
            calls += 1
            result = original_update(*args, **kwargs)
            if calls == 3:  # the batch's messages and addresses are written, not yet committed
                raise exc
            return result

        monkeypatch.setattr(contacts_refresh, "update_contacts", crashing_update)

    with pytest.raises(type(exc)):
        scan_once(db, config, now=NOW, sleep=lambda _s: None)

    # Sent (5) and INBOX's first batch (50) were committed with their cursors; the third batch left no trace.
    with db.read() as session:
        stored_ids = set(session.scalars(select(Message.message_id)))
        inbox_last_uid = session.scalar(select(Folder.last_uid).where(Folder.name == "INBOX"))
    assert len(stored_ids) == len(world.sent) + 50
    assert {m.message_id for m in world.sent} <= stored_ids
    inbox_uids = sorted(server_uids(mailbox, "INBOX").values())
    assert inbox_last_uid == inbox_uids[49]

    monkeypatch.undo()
    monkeypatch.setenv("PW", mailbox.password)
    report = scan_once(db, config, now=NOW, sleep=lambda _s: None)
    assert report.errors == {}
    assert report.accounts[0].messages_new == len(world.all) - len(stored_ids)
    assert snapshot(db) == clean_scan(reference_db, mailbox.dovecot, mailbox.user)


def server_uids(box: Mailbox, folder: str) -> dict[str, int]:
    with box.dovecot.client(box.user) as client:
        return mailgen.server_uids(client, folder)


# ------------------------------------------------------------------------------------ refused and absent


def test_refused_login_is_reported_not_retried_and_other_accounts_still_scan(
    mailbox: Mailbox,
    dovecot_factory: Callable[..., Dovecot],
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = seed(mailbox.dovecot, mailbox.user)
    # A private server for the refused login: Dovecot delays the next login from the same IP by seconds
    # after a failure (its auth penalty), which would slow down every later test on the shared server.
    other = dovecot_factory()
    bad_user = "locked-out@example.org"
    other.add_user(bad_user, "the-right-password")
    monkeypatch.setenv("PW", mailbox.password)
    monkeypatch.setenv("BAD_PW", "a-wrong-password")
    bad = mailgen.account_toml("bad", bad_user, port=other.port, password_env="BAD_PW")
    config = config_mod.parse(
        mailgen.config_toml(
            str(db.url),
            bad,  # first, so the good account is scanned after the failure
            mailgen.account_toml("main", mailbox.user, port=mailbox.dovecot.port, aliases=[ALIAS]),
        ),
        env={},
    )
    connects = count_calls(monkeypatch, ImapSession, "connect")
    delays: list[float] = []

    report = scan_once(db, config, now=NOW, sleep=delays.append)

    assert set(report.errors) == {"bad"}
    error = report.errors["bad"]
    assert isinstance(error, AuthenticationError)
    assert "a-wrong-password" not in str(error)
    assert connects[bad_user] == 1  # no retry loop against a refused password
    assert delays == []
    [stats] = report.accounts
    assert stats.account == "main"
    assert stats.messages_new == len(world.all)
    with db.read() as session:
        accounts = {a.name: (a.last_error, a.last_scan_at) for a in session.scalars(select(Account))}
    assert accounts["main"] == (None, NOW)
    assert "refused" in (accounts["bad"][0] or "")


def test_unreachable_server_is_retried_with_growing_backoff_then_reported(
    mailbox: Mailbox, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = seed(mailbox.dovecot, mailbox.user)
    monkeypatch.setenv("PW", mailbox.password)
    dead = mailgen.account_toml("dead", "nobody@example.org", port=free_port())
    config = make_config(db, mailbox.dovecot, mailbox.user, dead)
    connects = count_calls(monkeypatch, ImapSession, "connect")
    delays: list[float] = []

    report = scan_once(db, config, now=NOW, sleep=delays.append)

    error = report.errors["dead"]
    assert isinstance(error, MailError)
    assert not isinstance(error, AuthenticationError)
    assert connects["nobody@example.org"] == scan_mod.RETRIES + 1
    assert len(delays) == scan_mod.RETRIES
    for attempt, delay in enumerate(delays):
        assert 0.5 * 2**attempt <= delay <= 1.5 * 2**attempt
    assert [s.account for s in report.accounts] == ["main"]
    assert report.accounts[0].messages_new == len(world.all)
