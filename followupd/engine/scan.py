"""``scan_once``: one incremental pass over every configured account.

One failing account never stops the others: its error is recorded on the account (shown by ``status``) and
the scan carries on. Dropped connections are retried with backoff and jitter; an authentication failure is not
retried, because hammering a server with a wrong password gets accounts locked.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from followupd import secrets
from followupd.config import AccountConfig, Config
from followupd.engine.batch import BatchWriter, Progress, ScanStats, admission_policy, start_account
from followupd.errors import AuthenticationError, FollowupdError, MailError
from followupd.store import status_repo
from followupd.store.db import Database

log = logging.getLogger(__name__)

RETRIES = 3


@dataclass
class ScanReport:
    """Every account's stats, and the accounts that failed with why."""

    accounts: list[ScanStats] = field(default_factory=list)
    errors: dict[str, FollowupdError] = field(default_factory=dict)

    @property
    def messages_new(self) -> int:
        return sum(s.messages_new for s in self.accounts)

    @property
    def contacts_new(self) -> int:
        return sum(s.contacts_new for s in self.accounts)


def scan_once(
    db: Database,
    config: Config,
    *,
    now: datetime,
    progress: Progress | None = None,
    sleep: Callable[[float], None] = time.sleep,
    only: str | None = None,
) -> ScanReport:
    """Scan every account (or only the one named) once."""
    report = ScanReport()
    for account in config.accounts:
        if only is not None and account.name != only:
            continue
        try:
            stats = scan_account(db, config, account, now=now, progress=progress, sleep=sleep)
        except FollowupdError as exc:
            log.error("%s: scan failed: %s", account.name, exc)
            report.errors[account.name] = exc
            _record(db, account, now, error=str(exc))
            continue
        report.accounts.append(stats)
        _record(db, account, now, error=None)
    if config.send.drafts_folder:
        _sync_drafts_folder(db, config, report, now=now, only=only)
    return report


def _sync_drafts_folder(
    db: Database, config: Config, report: ScanReport, *, now: datetime, only: str | None
) -> None:
    """Reconcile the Drafts folders after the scan (and so before the next send: a draft the user sent from
    their mail client is SENT before the sender looks); an account's failure is recorded, never raised."""
    from followupd.engine.drafts_folder import sync_drafts_folder

    try:
        synced = sync_drafts_folder(db, config, now=now, only=only)
    except FollowupdError as exc:
        log.error("Drafts folder sync failed: %s", exc)
        for account in config.accounts:
            if account.imap is not None and (only is None or account.name == only):
                report.errors.setdefault(account.name, exc)
        return
    for name, failure in synced.errors.items():
        report.errors.setdefault(name, MailError(f"Drafts folder: {failure.message}", hint=failure.hint))


def scan_account(
    db: Database,
    config: Config,
    account: AccountConfig,
    *,
    now: datetime,
    progress: Progress | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ScanStats:
    """Scan one account, retrying dropped connections (not refused logins) with backoff and jitter."""
    account_id = start_account(db, account)
    writer = BatchWriter(db, account_id, account.addresses, admission_policy(config))
    stats = ScanStats(account.name)
    if account.imap is None:
        _scan_local(db, account, writer, stats, now=now, progress=progress, meetings=config.scan.meetings)
        return stats
    password = secrets.resolve(account.imap, what=f"accounts[{account.name}].imap")
    for attempt in range(RETRIES + 1):
        try:
            _scan_imap(
                db,
                account,
                password,
                writer,
                stats,
                now=now,
                progress=progress,
                meetings=config.scan.meetings,
            )
            return stats
        except AuthenticationError:
            raise
        except MailError as exc:
            if attempt == RETRIES:
                raise
            delay = min(60.0, 2.0**attempt) * (0.5 + random.random())  # noqa: S311 — jitter, not crypto
            log.warning("%s: %s; reconnecting in %.1f s", account.name, exc, delay)
            sleep(delay)
    return stats


def _scan_imap(
    db: Database,
    account: AccountConfig,
    password: str,
    writer: BatchWriter,
    stats: ScanStats,
    *,
    now: datetime,
    progress: Progress | None,
    meetings: bool = True,
) -> None:
    from followupd.engine.scan_imap import scan_imap
    from followupd.mail.imap import ImapSession

    assert account.imap is not None
    with ImapSession(account.imap, password) as session:
        scan_imap(db, account, session, writer, stats, now=now, progress=progress, meetings=meetings)


def _scan_local(
    db: Database,
    account: AccountConfig,
    writer: BatchWriter,
    stats: ScanStats,
    *,
    now: datetime,
    progress: Progress | None,
    meetings: bool = True,
) -> None:
    from followupd.engine.scan_local import scan_local
    from followupd.mail.local import open_source

    if account.maildir is not None:
        source = open_source("maildir", account.maildir.path)
    elif account.mbox is not None:
        source = open_source("mbox", account.mbox.path)
    else:  # config validation guarantees one source; this is a programming error
        raise AssertionError(f"account {account.name} has no source")
    scan_local(db, source, writer, stats, now=now, progress=progress, meetings=meetings)


def _record(db: Database, account: AccountConfig, now: datetime, *, error: str | None) -> None:
    with db.write() as session:
        status_repo.record_scan(session, account.name, now=now, error=error)
