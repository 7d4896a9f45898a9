"""What the user does to a draft at review: approve, skip, snooze, unsnooze, send now, edit.

Every change is one short write transaction (``BEGIN IMMEDIATE`` on SQLite, so it never fails with "database
is locked" against a running daemon) holding a compare-and-set update::

    UPDATE drafts SET ..., version = version + 1 WHERE id = ? AND state IN (...) AND version = ?

``version`` is the one the user looked at when they decided (the review screen, the editor) or, for a
one-shot command, the one read in the same transaction. A draft the daemon superseded or sent meanwhile is
never acted on: :class:`~followupd.errors.ConflictError` says what happened to it and that nothing was done.

Transitions (DESIGN.md section 5): QUEUED/SNOOZED -> APPROVED (approve); QUEUED/APPROVED/SNOOZED -> SKIPPED
(skip), -> SNOOZED (snooze; a snoozed draft needs review again when it wakes), -> APPROVED with
``scheduled_at = now`` (send now; the sender's window, caps and checks still apply); SNOOZED -> QUEUED
(unsnooze, or :func:`~followupd.store.drafts_repo.wake_snoozed` when its time has come). After a send whose
outcome nobody could establish, the user settles it: UNKNOWN -> SENT (mark sent), UNKNOWN/FAILED -> APPROVED
(retry). An edit keeps the state. A draft with an unsaved (invalid) edit cannot be approved until the edit is
fixed or discarded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any, cast

from sqlalchemy import CursorResult, update
from sqlalchemy.orm import Session

from followupd.core.lint import LintRules, LintWarning, lint
from followupd.errors import ConflictError, NotFoundError, UsageError
from followupd.store import drafts_repo
from followupd.store.db import Database
from followupd.store.models import Draft, DraftState

QUEUED, APPROVED, SNOOZED = DraftState.QUEUED, DraftState.APPROVED, DraftState.SNOOZED
UNKNOWN = DraftState.UNKNOWN
REVIEWABLE = frozenset({QUEUED, APPROVED, SNOOZED})
MAX_SUBJECT = 250
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class Changed:
    """The outcome of one transition: the draft's state and version afterwards; ``changed`` is False when
    the draft already was where the user wanted it (approving an approved draft)."""

    draft_id: int
    state: str
    version: int
    changed: bool = True


@dataclass(frozen=True)
class EditOutcome:
    """A saved edit (``problems`` empty, ``lint`` the new warnings) or one kept as ``invalid_edit``."""

    draft_id: int
    version: int
    problems: tuple[str, ...]
    lint: tuple[LintWarning, ...] = ()

    @property
    def saved(self) -> bool:
        return not self.problems


def approve(db: Database, draft_id: int, *, now: datetime, version: int | None = None) -> Changed:
    """QUEUED or SNOOZED -> APPROVED; the sender sends it at ``scheduled_at`` inside the safety rules."""
    return _change(db, draft_id, {QUEUED, SNOOZED}, APPROVED, now=now, version=version, idempotent=True)


def skip(
    db: Database, draft_id: int, *, now: datetime, reason: str = "", version: int | None = None
) -> Changed:
    """QUEUED, APPROVED or SNOOZED -> SKIPPED (final; the same follow-up is never queued again)."""
    note = f"skipped: {reason}" if reason else "skipped"
    target = DraftState.SKIPPED
    return _change(db, draft_id, REVIEWABLE, target, now=now, version=version, idempotent=True, note=note)


def snooze(
    db: Database, draft_id: int, until: datetime, *, now: datetime, version: int | None = None
) -> Changed:
    """QUEUED, APPROVED or SNOOZED -> SNOOZED until ``until``, when it becomes QUEUED (to review) again."""
    if until <= now:
        raise UsageError(f"{until:%Y-%m-%d %H:%M} UTC is not in the future; snooze until a later time")
    return _change(db, draft_id, REVIEWABLE, SNOOZED, now=now, version=version, snoozed_until=until)


def unsnooze(db: Database, draft_id: int, *, now: datetime, version: int | None = None) -> Changed:
    """SNOOZED -> QUEUED."""
    return _change(db, draft_id, {SNOOZED}, QUEUED, now=now, version=version, idempotent=True)


def send_now(db: Database, draft_id: int, *, now: datetime, version: int | None = None) -> Changed:
    """Approve, scheduled for ``now``: the sender takes it at its next run (window, caps, checks apply)."""
    return _change(db, draft_id, REVIEWABLE, APPROVED, now=now, version=version, scheduled_at=now)


def mark_sent(db: Database, draft_id: int, *, now: datetime, version: int | None = None) -> Changed:
    """UNKNOWN -> SENT: the user checked (with the recipient, in another mail client) that it went out.

    The sender never settles an UNKNOWN draft it cannot find in the Sent folder; this is the user doing it.
    ``sent_at`` becomes ``now`` (the real moment is unknown), and the contact's clock restarts, in the same
    transaction, as for any sent follow-up.
    """
    from followupd.engine.deliver import touch

    note = "marked sent by the user (it was unknown whether it went out)"
    return _change(
        db,
        draft_id,
        {UNKNOWN},
        DraftState.SENT,
        now=now,
        version=version,
        idempotent=True,
        after=lambda session, draft: touch(session, draft.contact_id, now),
        sent_at=now,
        note=note,
    )


def retry(db: Database, draft_id: int, *, now: datetime, version: int | None = None) -> Changed:
    """UNKNOWN or FAILED -> APPROVED, due now, with a fresh retry budget: the user decided to send it again.

    The Message-ID is kept, so a recipient whose mail client already has the first copy (an UNKNOWN draft that
    did go out) sees one message, not two. The sender's window, caps and last-moment checks apply as always.
    """
    return _change(
        db,
        draft_id,
        {UNKNOWN, DraftState.FAILED},
        APPROVED,
        now=now,
        version=version,
        scheduled_at=now,
        attempts=0,
        next_attempt_at=None,
        last_error=None,
        note="approved again by the user",
    )


def _change(
    db: Database,
    draft_id: int,
    allowed: Collection[DraftState],
    target: DraftState,
    *,
    now: datetime,
    version: int | None,
    idempotent: bool = False,
    after: Callable[[Session, Draft], None] | None = None,
    **values: Any,
) -> Changed:
    with db.write() as session:
        draft = session.get(Draft, draft_id)
        if draft is None:
            raise _not_found(draft_id)
        if idempotent and draft.state == target.value and version in (None, draft.version):
            return Changed(draft_id, draft.state, draft.version, changed=False)
        _check(draft, allowed, version)
        if target is APPROVED and draft.invalid_edit is not None:
            raise UsageError(
                f"draft {draft_id} has an edit that was not saved because it is invalid; nothing was done",
                hint=f"Fix it with `followupd drafts edit {draft_id}`, or drop it with"
                f" `followupd drafts edit {draft_id} --discard`.",
            )
        values.setdefault("snoozed_until", None)
        new_version = _cas(session, draft, allowed, state=target.value, updated_at=now, **values)
        if after is not None:
            after(session, draft)
        return Changed(draft_id, target.value, new_version)


def _cas(session: Session, draft: Draft, allowed: Collection[DraftState], **values: Any) -> int:
    """The compare-and-set itself; the row was read in this transaction, so a miss means a concurrent writer
    on a backend without ``BEGIN IMMEDIATE`` (PostgreSQL) got there first."""
    expected = draft.version
    result = session.execute(
        update(Draft)
        .where(
            Draft.id == draft.id,
            Draft.state.in_([s.value for s in allowed]),
            Draft.version == expected,
        )
        .values(**values, version=expected + 1)
        .execution_options(synchronize_session=False)
    )
    if cast(CursorResult[Any], result).rowcount != 1:
        session.expire(draft)
        raise conflict(draft, looked_at=expected)
    return expected + 1


def _check(draft: Draft, allowed: Collection[DraftState], version: int | None) -> None:
    if draft.state not in {s.value for s in allowed} or (version is not None and draft.version != version):
        raise conflict(draft, looked_at=version)


def _not_found(draft_id: int) -> NotFoundError:
    return NotFoundError(
        f"no draft {draft_id}", hint="`followupd drafts list` shows the drafts and their ids."
    )


def conflict(draft: Draft, *, looked_at: int | None = None) -> ConflictError:
    """The message for a draft that is no longer what the user acted on."""
    updated = draft.updated_at if draft.updated_at.tzinfo else draft.updated_at.replace(tzinfo=UTC)
    when = f"{updated:%Y-%m-%d %H:%M} UTC"
    detail = _detail(draft)
    if looked_at is not None and draft.version != looked_at and draft.state in {s.value for s in REVIEWABLE}:
        what = f"draft {draft.id} was changed elsewhere at {when} (it is {draft.state} now)"
    else:
        what = f"draft {draft.id} was {draft.state} at {when}" + (f" ({detail})" if detail else "")
    return ConflictError(
        f"{what}; nothing was done", hint=f"See where it stands: `followupd drafts show {draft.id}`."
    )


def _detail(draft: Draft) -> str:
    if draft.state == DraftState.SUPERSEDED.value:
        return (draft.note or draft.last_error or "").removeprefix("superseded:").strip()
    if draft.state == DraftState.SENT.value:
        return "it already went out"
    if draft.state == DraftState.SKIPPED.value:
        return draft.note.removeprefix("skipped").lstrip(": ")
    if draft.state in (DraftState.FAILED.value, DraftState.UNKNOWN.value, DraftState.SENDING.value):
        return draft.last_error or ""
    if draft.state == DraftState.SNOOZED.value and draft.snoozed_until is not None:
        return f"until {draft.snoozed_until:%Y-%m-%d %H:%M}"
    return ""


# --- editing ------------------------------------------------------------------------------------------------


def editable_text(view: drafts_repo.DraftView) -> str:
    """What the editor shows: a pending invalid edit to fix, else ``Subject: ...``, a blank line, the body."""
    if view.invalid_edit is not None:
        return view.invalid_edit
    body = view.body if view.body.endswith("\n") else view.body + "\n"
    return f"Subject: {view.subject}\n\n{body}"


def parse_edit(text: str) -> tuple[str, str, tuple[str, ...]]:
    """(subject, body, problems) from an edited ``Subject: ...`` / blank line / body text.

    Problems: no Subject line first, another header line (nothing but the subject may be set: no Bcc, no
    Reply-To), control characters or encoded words in the subject, an empty subject or body.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    head, _blank, body = text.partition("\n\n")
    lines = head.split("\n")
    problems: list[str] = []
    first = lines[0]
    subject = ""
    if first[:8].lower() != "subject:":
        problems.append('the first line must be "Subject: ..." (then a blank line, then the message)')
    else:
        subject = " ".join(first[8:].split())
        problems += _subject_problems(first[8:], subject)
    for line in lines[1:]:
        problems.append(
            f"only the Subject line may come before the blank line, found {line[:40]!r}"
            " (other headers cannot be set here)"
        )
    body = body.lstrip("\n").rstrip("\n")
    if not body.strip():
        problems.append("the message body is empty")
    return subject, body + "\n", tuple(problems)


def _subject_problems(raw: str, subject: str) -> list[str]:
    if not subject:
        return ["the subject is empty"]
    problems = []
    if _CONTROL.search(raw.strip()):
        problems.append("the subject contains control characters")
    if "=?" in subject:
        problems.append("write the subject as plain text, not as an encoded word (=?...?=)")
    if len(subject) > MAX_SUBJECT:
        problems.append(f"the subject is {len(subject)} characters long; keep it under {MAX_SUBJECT}")
    return problems


def save_edit(
    db: Database, draft_id: int, text: str, *, version: int, now: datetime, rules: LintRules
) -> EditOutcome:
    """Save an edit made on ``version``: valid -> new subject/body, re-linted; invalid -> kept in
    ``invalid_edit`` (subject and body unchanged) to be re-opened next time. Either way the version moves on;
    a draft that changed meanwhile raises ConflictError and nothing is written."""
    subject, body, problems = parse_edit(text)
    with db.write() as session:
        draft = session.get(Draft, draft_id)
        if draft is None:
            raise _not_found(draft_id)
        _check(draft, REVIEWABLE, version)
        if problems:
            _cas(session, draft, REVIEWABLE, invalid_edit=text, updated_at=now)
            return EditOutcome(draft_id, version + 1, problems)
        warnings = tuple(lint(subject, body, reason=draft.reason, rules=rules))
        values = {
            "subject": subject,
            "body": body,
            "lint": json.dumps([{"code": str(w.code), "message": w.message} for w in warnings]),
            "invalid_edit": None,
            "updated_at": now,
        }
        _cas(session, draft, REVIEWABLE, **values)
        return EditOutcome(draft_id, version + 1, (), warnings)


def discard_edit(db: Database, draft_id: int, *, now: datetime) -> Changed:
    """Drop a pending invalid edit; the draft keeps its last valid text."""
    with db.write() as session:
        draft = session.get(Draft, draft_id)
        if draft is None:
            raise _not_found(draft_id)
        if draft.invalid_edit is None:
            return Changed(draft_id, draft.state, draft.version, changed=False)
        _check(draft, REVIEWABLE, None)
        new_version = _cas(session, draft, REVIEWABLE, invalid_edit=None, updated_at=now)
        return Changed(draft_id, draft.state, new_version)


# --- waking and times ---------------------------------------------------------------------------------------


def wake_due(db: Database, now: datetime) -> list[int]:
    """Wake the snoozed drafts whose time has come (a read first, so nothing is written when none is)."""
    with db.read() as session:
        if not drafts_repo.snoozed_due(session, now):
            return []
    with db.write() as session:
        return drafts_repo.wake_snoozed(session, now)


def parse_when(text: str, *, now: datetime, zone: tzinfo) -> datetime:
    """A moment from words or a date ("next monday", "in 2 weeks", "2026-12-01", "2026-12-01 08:00"),
    read in ``zone`` relative to ``now``; returned as aware UTC. UsageError when it cannot be read."""
    text = text.strip()
    try:
        local = datetime.fromisoformat(text)
    except ValueError:
        local = _dateparse(text, now.astimezone(zone).replace(tzinfo=None))
    if local.tzinfo is None:
        local = local.replace(tzinfo=zone)
    return local.astimezone(UTC)


def _dateparse(text: str, base: datetime) -> datetime:
    import dateparser  # ~0.1 s to import: only when a time is given in words

    settings: Any = {
        "RELATIVE_BASE": base,
        "PREFER_DATES_FROM": "future",
        "RETURN_AS_TIMEZONE_AWARE": False,
    }
    parsed = dateparser.parse(text, languages=["en"], settings=settings) if text else None
    if not isinstance(parsed, datetime):
        raise UsageError(
            f"cannot read {text!r} as a time",
            hint="Try 'tomorrow 9am', 'next monday', 'in 2 weeks' or '2026-12-01'.",
        )
    return parsed


__all__ = [
    "Changed",
    "EditOutcome",
    "approve",
    "conflict",
    "discard_edit",
    "editable_text",
    "parse_edit",
    "parse_when",
    "save_edit",
    "send_now",
    "skip",
    "snooze",
    "unsnooze",
    "wake_due",
]
