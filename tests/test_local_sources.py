"""Maildir and mbox readers: layout, stable uids, incremental state, framing edge cases, bounded memory."""

from __future__ import annotations

import json
import os
import re
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from followupd.core.headers import header_block, strip_mbox_from_line
from followupd.errors import MailError
from followupd.mail.local import (
    HEADER_CAP,
    LocalSource,
    MboxSource,
    maildir_uid,
    open_source,
    unique_part,
)
from followupd.mail.source import FolderInfo, RawMessage

OLD = 1_600_000_000  # a past mtime: fingerprints of recently modified paths never compare equal


def never(uid: int) -> bool:
    return False


def always(uid: int) -> bool:
    return True


def read(
    source: LocalSource, folder: str, state: str | None = None, known: Callable[[int], bool] = never
) -> list[tuple[RawMessage, str]]:
    return list(source.messages(folder, state=state, known=known))


def subjects(pairs: list[tuple[RawMessage, str]]) -> list[str]:
    out = []
    for raw, _ in pairs:
        for line in raw.headers.splitlines():
            if line.startswith(b"Subject: "):
                out.append(line[9:].decode())
    return out


def message(subject: str, body: str = "Hello.\n") -> bytes:
    return f"From: alice@example.com\nTo: me@example.com\nSubject: {subject}\n\n{body}".encode()


# --- Maildir ---------------------------------------------------------------------------------------------


def make_maildir(path: Path) -> Path:
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    return path


def deliver(folder: Path, name: str, data: bytes, *, sub: str = "cur", mtime: int = OLD) -> Path:
    path = folder / sub / name
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


def age(*dirs: Path) -> None:
    for directory in dirs:
        for sub in ("cur", "new"):
            os.utime(directory / sub, (OLD, OLD))


@pytest.fixture
def maildir(tmp_path: Path) -> Path:
    root = make_maildir(tmp_path / "Mail")
    for name in (".Sent", ".Archive", ".a.b", ".Trash", ".Junk", ".Spam", ".Drafts", ".Sent Items"):
        make_maildir(root / name)
    deliver(root, "1700000001.M1P1.host:2,S", message("one"))
    deliver(root, "1700000002.M2P1.host", message("two"), sub="new")
    deliver(root / ".Sent", "1700000003.M3P1.host,U=7:2,S", message("sent"))
    deliver(root / ".Trash", "1700000004.M4P1.host:2,S", message("trash"))
    return root


def test_maildir_folders_and_roles(maildir: Path) -> None:
    folders = open_source("maildir", maildir).folders()
    assert folders == [
        FolderInfo("Archive", "other"),
        FolderInfo("INBOX", "inbox"),
        FolderInfo("Sent", "sent"),
        FolderInfo("Sent Items", "sent"),
        FolderInfo("a/b", "other"),
    ]


def test_maildir_plain_subdirectories_are_folders(tmp_path: Path) -> None:
    root = tmp_path / "Mail"
    make_maildir(root / "INBOX")
    make_maildir(root / "[Gmail]" / "Sent Mail")
    make_maildir(root / "[Gmail]" / "All Mail")
    make_maildir(root / "[Gmail]" / "Trash")
    make_maildir(root / "[Gmail].Drafts")  # offlineimap's "." separator
    folders = open_source("maildir", root).folders()
    assert folders == [
        FolderInfo("INBOX", "inbox"),
        FolderInfo("[Gmail]/All Mail", "all"),
        FolderInfo("[Gmail]/Sent Mail", "sent"),
    ]


def test_maildir_reads_cur_and_new_header_block_and_mtime(maildir: Path) -> None:
    pairs = read(open_source("maildir", maildir), "INBOX")
    assert subjects(pairs) == ["one", "two"]
    raw, state = pairs[0]
    assert state == ""
    assert raw.headers == b"From: alice@example.com\nTo: me@example.com\nSubject: one\n"
    assert raw.internal_at == datetime.fromtimestamp(OLD, UTC)
    assert raw.uid == maildir_uid("1700000001.M1P1.host")
    assert 0 < raw.uid < 2**63
    assert subjects(read(open_source("maildir", maildir), "Sent")) == ["sent"]


@pytest.mark.parametrize(
    ("name", "unique"),
    [
        ("1700000001.M1P1.host", "1700000001.M1P1.host"),
        ("1700000001.M1P1.host:2,", "1700000001.M1P1.host"),
        ("1700000001.M1P1.host:2,FRS", "1700000001.M1P1.host"),
        ("1700000001.M1P1.host,S=1234,W=1260:2,S", "1700000001.M1P1.host,S=1234,W=1260"),
        ("1700000001.12345_1.host,U=42:2,S", "1700000001.12345_1.host"),
        ("1700000001_0.1234.host,U=42,FMD5=0123abcd:2,RS", "1700000001_0.1234.host"),
        ("1700000001.M1P1.host;2,S", "1700000001.M1P1.host"),
        ("1700000001.M1P1.host!2,S", "1700000001.M1P1.host"),
    ],
)
def test_unique_part(name: str, unique: str) -> None:
    assert unique_part(name) == unique


def test_flag_changes_and_move_to_cur_keep_the_uid(maildir: Path) -> None:
    source = open_source("maildir", maildir)
    before = {s: raw.uid for (raw, _), s in zip(read(source, "INBOX"), ("one", "two"), strict=True)}
    os.rename(maildir / "cur/1700000001.M1P1.host:2,S", maildir / "cur/1700000001.M1P1.host:2,RS")
    os.rename(maildir / "new/1700000002.M2P1.host", maildir / "cur/1700000002.M2P1.host:2,S")
    after = {s: raw.uid for (raw, _), s in zip(read(source, "INBOX"), ("one", "two"), strict=True)}
    assert after == before
    sent_uid = read(source, "Sent")[0][0].uid
    sent = maildir / ".Sent/cur"
    os.rename(sent / "1700000003.M3P1.host,U=7:2,S", sent / "1700000003.M3P1.host,U=7:2,FS")
    assert read(source, "Sent")[0][0].uid == sent_uid


def test_known_uids_are_skipped(maildir: Path) -> None:
    source = open_source("maildir", maildir)
    stored = {raw.uid for raw, _ in read(source, "INBOX")}
    assert read(source, "INBOX", known=stored.__contains__) == []
    deliver(maildir, "1700000009.M9P1.host", message("nine"), sub="new")
    assert subjects(read(source, "INBOX", known=stored.__contains__)) == ["nine"]


def test_vanished_file_is_skipped(maildir: Path) -> None:
    def delete_the_other(uid: int) -> bool:
        (maildir / "new/1700000002.M2P1.host").unlink(missing_ok=True)
        return False

    assert subjects(read(open_source("maildir", maildir), "INBOX", known=delete_the_other)) == ["one"]


def test_file_moved_mid_scan_is_found_again(maildir: Path) -> None:
    def move_the_other(uid: int) -> bool:
        new = maildir / "new/1700000002.M2P1.host"
        if new.exists():
            new.rename(maildir / "cur/1700000002.M2P1.host:2,S")
        return False

    pairs = read(open_source("maildir", maildir), "INBOX", known=move_the_other)
    assert sorted(subjects(pairs)) == ["one", "two"]
    assert len({raw.uid for raw, _ in pairs}) == 2


def test_maildir_fingerprint(maildir: Path) -> None:
    source = open_source("maildir", maildir)
    age(maildir)
    first = source.fingerprint("INBOX")
    assert source.fingerprint("INBOX") == first
    deliver(maildir, "1700000010.M10P1.host", message("ten"), sub="new")
    assert source.fingerprint("INBOX") != first
    age(maildir)
    second = source.fingerprint("INBOX")
    assert second == source.fingerprint("INBOX")
    os.rename(maildir / "cur/1700000001.M1P1.host:2,S", maildir / "cur/1700000001.M1P1.host:2,RS")
    assert source.fingerprint("INBOX") != second  # a flag change renames within cur/


def test_recently_modified_folder_never_has_a_stable_fingerprint(maildir: Path) -> None:
    source = open_source("maildir", maildir)
    assert source.fingerprint("INBOX") != source.fingerprint("INBOX")


def test_maildir_reads_only_the_header_block(tmp_path: Path) -> None:
    root = make_maildir(tmp_path / "Mail")
    deliver(root, "big:2,S", message("big", "x" * 5_000_000))
    deliver(root, "crlf:2,S", b"Subject: crlf\r\nFrom: a@b\r\n\r\nbody\r\n")
    deliver(root, "huge:2,S", b"Subject: huge\nX-Long: " + b"y" * (2 * HEADER_CAP) + b"\n\nbody")
    deliver(root, "headless:2,S", b"\nbody only\n")
    pairs = {raw.uid: raw for raw, _ in read(open_source("maildir", root), "INBOX")}
    assert pairs[maildir_uid("big")].headers.endswith(b"Subject: big\n")
    assert pairs[maildir_uid("crlf")].headers == b"Subject: crlf\r\nFrom: a@b\r\n"
    assert len(pairs[maildir_uid("huge")].headers) == HEADER_CAP
    assert pairs[maildir_uid("headless")].headers == b""


def test_vanished_folder_yields_nothing(maildir: Path) -> None:
    source = open_source("maildir", maildir)
    source.folders()
    for sub in ("cur", "new", "tmp"):
        for child in (maildir / ".Archive" / sub).iterdir():
            child.unlink()
        (maildir / ".Archive" / sub).rmdir()
    (maildir / ".Archive").rmdir()
    assert read(source, "Archive") == []
    assert source.fingerprint("Archive") == "absent"


def test_missing_maildir_says_what_to_check(tmp_path: Path) -> None:
    with pytest.raises(MailError, match="does not exist") as info:
        open_source("maildir", tmp_path / "nowhere")
    assert "[accounts.maildir] path" in str(info.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MailError, match=r"no Maildir folder") as info:
        open_source("maildir", tmp_path / "empty")
    assert "[accounts.maildir] path" in str(info.value)


def test_maildir_removed_after_opening(maildir: Path, tmp_path: Path) -> None:
    source = open_source("maildir", maildir)
    maildir.rename(tmp_path / "elsewhere")
    with pytest.raises(MailError, match="does not exist"):
        source.folders()
    with pytest.raises(MailError, match="does not exist"):
        read(source, "INBOX")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_unreadable_maildir_message(maildir: Path) -> None:
    source = open_source("maildir", maildir)
    (maildir / "cur/1700000001.M1P1.host:2,S").chmod(0)
    with pytest.raises(MailError, match="cannot be read") as info:
        read(source, "INBOX")
    assert "[accounts.maildir] path" in str(info.value)
    maildir.chmod(0)
    try:
        with pytest.raises(MailError, match="cannot be read"):
            source.folders()
    finally:
        maildir.chmod(0o700)


# --- mbox ------------------------------------------------------------------------------------------------


def mbox_entry(subject: str, *, body: str = "Hello.\n", date: str = "Mon Jan  1 10:00:00 2024") -> bytes:
    return f"From alice@example.com {date}\n".encode() + message(subject, body) + b"\n"


def write(path: Path, *entries: bytes) -> Path:
    path.write_bytes(b"".join(entries))
    return path


def mbox(tmp_path: Path, *entries: bytes, name: str = "mail.mbox") -> tuple[MboxSource, Path]:
    path = write(tmp_path / name, *entries)
    return MboxSource(path), path


def test_mbox_first_read(tmp_path: Path) -> None:
    takeout = (
        b"From 1789@xxx Thu Feb 01 12:30:00 +0100 2024\nX-GM-THRID: 1789\nX-Gmail-Labels: Inbox,Opened\n"
        b"Subject: takeout\n\nbody\n\n"
    )
    source, path = mbox(tmp_path, mbox_entry("one"), mbox_entry("two"), takeout)
    pairs = read(source, "mail.mbox")
    assert subjects(pairs) == ["one", "two", "takeout"]
    data = path.read_bytes()
    assert [raw.uid for raw, _ in pairs] == [
        1,
        data.index(b"From alice", 1) + 1,
        data.index(b"From 1789") + 1,
    ]
    assert pairs[0][0].headers == b"From: alice@example.com\nTo: me@example.com\nSubject: one\n"
    assert pairs[0][0].internal_at == datetime(2024, 1, 1, 10, 0, tzinfo=UTC)
    assert pairs[2][0].internal_at == datetime(2024, 2, 1, 11, 30, tzinfo=UTC)
    assert pairs[2][0].headers.startswith(b"X-GM-THRID: 1789\n")
    state = json.loads(pairs[-1][1])
    assert set(state) == {"offset", "size", "head", "ino"}
    assert state["offset"] == state["size"] == len(data)
    assert state["ino"] == path.stat().st_ino
    assert json.loads(pairs[0][1])["offset"] == pairs[1][0].uid - 1


def test_mbox_append_then_read_from_state(tmp_path: Path) -> None:
    source, path = mbox(tmp_path, mbox_entry("one"), mbox_entry("two"))
    state = read(source, "mail.mbox")[-1][1]
    assert read(source, "mail.mbox", state) == []
    with path.open("ab") as file:
        file.write(mbox_entry("three") + mbox_entry("four"))
    pairs = read(source, "mail.mbox", state)
    assert subjects(pairs) == ["three", "four"]
    assert read(source, "mail.mbox", pairs[-1][1]) == []


def test_mbox_resume_from_every_state_loses_and_repeats_nothing(tmp_path: Path) -> None:
    names = [f"m{i}" for i in range(12)]
    body = "y" * 700 + "\n"  # messages straddle the 4 KB head hash
    source, _ = mbox(tmp_path, *(mbox_entry(n, body=body) for n in names))
    pairs = read(source, "mail.mbox")
    for done, (_, state) in enumerate(pairs, start=1):
        assert subjects(read(source, "mail.mbox", state)) == names[done:]


def test_mbox_rewrite_or_truncate_restarts_from_zero(tmp_path: Path) -> None:
    source, path = mbox(tmp_path, mbox_entry("one"), mbox_entry("two"))
    state = read(source, "mail.mbox")[-1][1]
    replacement = write(tmp_path / "new.mbox", mbox_entry("zero"), mbox_entry("one"), mbox_entry("two"))
    os.replace(replacement, path)  # a new export: another inode
    # The stored uids are offsets into the old file: "known" must not hide the messages now at those offsets.
    assert subjects(read(source, "mail.mbox", state, always)) == ["zero", "one", "two"]
    state = read(source, "mail.mbox")[-1][1]
    with path.open("r+b") as file:  # same inode, truncated
        file.truncate(len(mbox_entry("zero") + mbox_entry("one")) - 3)
    assert subjects(read(source, "mail.mbox", state, always)) == ["zero", "one"]


def test_mbox_same_inode_rewritten_in_place_restarts(tmp_path: Path) -> None:
    source, path = mbox(tmp_path, mbox_entry("one"), mbox_entry("two"))
    state = read(source, "mail.mbox")[-1][1]
    with path.open("r+b") as file:
        file.write(mbox_entry("One") + mbox_entry("Two") + mbox_entry("three"))
    assert subjects(read(source, "mail.mbox", state)) == ["One", "Two", "three"]


def test_mbox_last_message_that_grew_restarts(tmp_path: Path) -> None:
    source, path = mbox(tmp_path, mbox_entry("one"), mbox_entry("two")[:-10])  # a writer is mid-message
    state = read(source, "mail.mbox")[-1][1]
    write(path, mbox_entry("one"), mbox_entry("two"), mbox_entry("three"))
    assert subjects(read(source, "mail.mbox", state)) == ["one", "two", "three"]


@pytest.mark.parametrize("state", ["", "{", "[]", '{"offset": "1"}', '{"offset": 1, "head": 2, "ino": 3}'])
def test_mbox_malformed_state_restarts(tmp_path: Path, state: str) -> None:
    source, _ = mbox(tmp_path, mbox_entry("one"))
    assert subjects(read(source, "mail.mbox", state)) == ["one"]


def test_mbox_crlf(tmp_path: Path) -> None:
    entries = [mbox_entry(s, body="a\n\nFrom me, with love\n").replace(b"\n", b"\r\n") for s in ("a", "b")]
    source, _ = mbox(tmp_path, *entries)
    pairs = read(source, "mail.mbox")
    assert subjects(pairs) == ["a", "b"]
    assert pairs[0][0].headers == b"From: alice@example.com\r\nTo: me@example.com\r\nSubject: a\r\n"
    assert pairs[0][0].internal_at == datetime(2024, 1, 1, 10, 0, tzinfo=UTC)


def test_mbox_without_trailing_newline(tmp_path: Path) -> None:
    source, _ = mbox(tmp_path, mbox_entry("one"), b"From x Mon Jan  1 10:00:00 2024\nSubject: last")
    pairs = read(source, "mail.mbox")
    assert subjects(pairs) == ["one", "last"]
    assert pairs[1][0].headers == b"Subject: last"
    source, _ = mbox(tmp_path, b"From x Mon Jan  1 10:00:00 2024\nSubject: only\n\nbody", name="b.mbox")
    assert subjects(read(source, "b.mbox")) == ["only"]


def test_mbox_empty_file_and_blank_file(tmp_path: Path) -> None:
    source, _ = mbox(tmp_path)
    assert read(source, "mail.mbox") == []
    source, _ = mbox(tmp_path, b"\n\r\n\n", name="blank.mbox")
    assert read(source, "blank.mbox") == []


def test_mbox_without_leading_from_line_is_one_message(tmp_path: Path) -> None:
    source, _ = mbox(tmp_path, message("bare") + b"\nmore body\n")
    pairs = read(source, "mail.mbox")
    assert subjects(pairs) == ["bare"]
    assert pairs[0][0].uid == 1
    assert pairs[0][0].internal_at is None
    source, _ = mbox(tmp_path, b"\n\n" + mbox_entry("late"), name="late.mbox")
    assert [raw.uid for raw, _ in read(source, "late.mbox")] == [3]


def test_quoted_from_in_body_is_not_a_split(tmp_path: Path) -> None:
    body = "Hi,\n\n>From the archive: nothing.\n\n>>From deeper\n"
    source, _ = mbox(tmp_path, mbox_entry("one", body=body), mbox_entry("two"))
    assert subjects(read(source, "mail.mbox")) == ["one", "two"]


def test_unquoted_from_in_body_is_not_a_split(tmp_path: Path) -> None:
    # mboxo ambiguity, decided: a split needs a blank line before the "From " line AND a header line after it.
    no_blank = "Hi,\nFrom someone who knows:\nSubject: looks like a header\n"
    not_headers = "Hi,\n\nFrom the desk of Alice\nwho writes prose, not headers.\n"
    source, _ = mbox(tmp_path, mbox_entry("one", body=no_blank), mbox_entry("two", body=not_headers))
    assert subjects(read(source, "mail.mbox")) == ["one", "two"]


def test_gmail_spam_and_trash_are_skipped(tmp_path: Path) -> None:
    def labelled(subject: str, labels: str) -> bytes:
        head = f"From 1@xxx Mon Jan  1 10:00:00 2024\nX-Gmail-Labels: {labels}\n"
        return f"{head}Subject: {subject}\n\nb\n\n".encode()

    source, _ = mbox(
        tmp_path,
        labelled("kept", "Inbox,Opened"),
        labelled("spam", "Spam"),
        labelled("trash", "Opened,\n Trash"),
        labelled("sent", "Sent"),
    )
    assert subjects(read(source, "mail.mbox")) == ["kept", "sent"]


def test_mbox_envelope_dates(tmp_path: Path) -> None:
    dates = {
        "Mon Jan  1 10:00:00 2024": datetime(2024, 1, 1, 10, 0, tzinfo=UTC),
        "Mon Jan 01 10:00:00 -0500 2024": datetime(2024, 1, 1, 15, 0, tzinfo=UTC),
        "Mon Jan  1 10:00 EST 2024": datetime(2024, 1, 1, 10, 0, tzinfo=UTC),
        "Fri Dec 31 23:59:59 -2359 9999": None,  # past datetime.max in UTC
        "Mon Feb 30 10:00:00 2024": None,
        "Mon Foo  1 10:00:00 2024": None,
        "junk": None,
    }
    source, _ = mbox(tmp_path, *(mbox_entry(str(i), date=d) for i, d in enumerate(dates)))
    assert [raw.internal_at for raw, _ in read(source, "mail.mbox")] == list(dates.values())


def test_mbox_directory_folders_and_roles(tmp_path: Path) -> None:
    folder = tmp_path / "Takeout"
    folder.mkdir()
    for name in (
        "All mail Including Spam and Trash.mbox",
        "Sent.mbox",
        "Inbox.mbox",
        "Consent.mbox",
        "x.txt",
    ):
        write(folder / name, mbox_entry(name))
    source = open_source("mbox", folder)
    assert source.folders() == [
        FolderInfo("All mail Including Spam and Trash.mbox", "all"),
        FolderInfo("Consent.mbox", "other"),
        FolderInfo("Inbox.mbox", "inbox"),
        FolderInfo("Sent.mbox", "sent"),
    ]
    assert subjects(read(source, "Sent.mbox")) == ["Sent.mbox"]
    for bad in ("x.txt", "../Takeout/Sent.mbox", "missing.mbox"):
        with pytest.raises(MailError):
            read(source, bad)
    single = open_source("mbox", folder / "Sent.mbox")
    assert single.folders() == [FolderInfo("Sent.mbox", "sent")]


def test_mbox_fingerprint(tmp_path: Path) -> None:
    source, path = mbox(tmp_path, mbox_entry("one"))
    os.utime(path, (OLD, OLD))
    first = source.fingerprint("mail.mbox")
    assert source.fingerprint("mail.mbox") == first
    with path.open("ab") as file:
        file.write(mbox_entry("two"))
    os.utime(path, (OLD, OLD))
    assert source.fingerprint("mail.mbox") != first  # the size changed even though the mtime did not


def test_mbox_errors_say_what_to_check(tmp_path: Path) -> None:
    with pytest.raises(MailError, match="does not exist") as info:
        open_source("mbox", tmp_path / "missing.mbox")
    assert "[accounts.mbox] path" in str(info.value)
    source, path = mbox(tmp_path, mbox_entry("one"))
    path.unlink()
    with pytest.raises(MailError, match="does not exist"):
        source.fingerprint("mail.mbox")
    with pytest.raises(MailError, match="does not exist"):
        read(source, "mail.mbox")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "odd.mbox").mkdir()  # not a file: cannot be read
    with pytest.raises(MailError, match=r"no \.mbox file"):
        open_source("mbox", tmp_path / "dir").folders()
    with pytest.raises(MailError, match="cannot be read"):
        read(MboxSource(tmp_path / "dir"), "odd.mbox")


def test_mbox_malformed_content_never_crashes(tmp_path: Path) -> None:
    junk = bytes(range(256)) * 50 + b"\n\nFrom \n\nFrom x\n:\n\n\r\n\rFrom y\nA:\n" + b"\x00" * 5000 + b"\n\n"
    source, _ = mbox(tmp_path, junk, mbox_entry("after"), b"From \n")
    pairs = read(source, "mail.mbox")
    assert subjects(pairs)[-1] == "after"
    assert all(0 < raw.uid < 2**63 for raw, _ in pairs)


def generated_mbox(path: Path, count: int) -> list[bytes]:
    headers = []
    with path.open("wb") as file:
        for i in range(count):
            block = f"From: p{i}@example.com\nSubject: n{i}\nX-Pad: {'z' * (i % 97)}\n".encode()
            body = b"".join(b"line %d\n" % j for j in range(i % 53)) + b"\n>From quoted\n"
            file.write(b"From p@example.com Mon Jan  1 10:00:00 2024\n" + block + b"\n" + body + b"\n")
            headers.append(block)
    return headers


def test_small_chunks_read_the_same_as_large_ones(tmp_path: Path) -> None:
    path = tmp_path / "gen.mbox"
    headers = generated_mbox(path, 600)
    for chunk in (7, 1000, 9000):
        pairs = read(MboxSource(path, chunk_size=chunk), "gen.mbox")
        assert [raw.headers for raw, _ in pairs] == headers


@pytest.mark.timeout(30)
def test_mbox_memory_stays_flat(tmp_path: Path) -> None:
    path = tmp_path / "big.mbox"
    body = b"".join(
        b"body line %05d of a long message, padded out to look like real text.\n" % j for j in range(300)
    )
    entry = (
        b"From a@example.com Mon Jan  1 10:00:00 2024\nFrom: a@example.com\nSubject: big\n\n" + body + b"\n"
    )
    block = entry * 200
    with path.open("wb") as file:
        for _ in range(50_000_000 // len(block) + 1):
            file.write(block)
    expected = path.stat().st_size // len(entry)
    source = open_source("mbox", path)
    tracemalloc.start()
    try:
        count = sum(1 for _ in source.messages("big.mbox", state=None, known=never))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == expected
    assert peak < 4 * 1024 * 1024  # timings are benchmarks, not assertions: the timeout only catches a hang


# --- property: whatever messages are written as mbox (mboxrd quoting), they are read back ---------------

_NAMES = st.sampled_from(["From", "To", "Subject", "Message-ID", "X-GM-THRID", "Received", "X-Custom"])
_TEXT = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"]), max_size=40)
_BODY_LINE = st.one_of(_TEXT, st.just(""), st.just("From here"), _TEXT.map(lambda t: ">From " + t))
_MESSAGE = st.tuples(
    st.lists(st.tuples(_NAMES, _TEXT), min_size=1, max_size=6), st.lists(_BODY_LINE, max_size=8)
)


def _quote(line: str) -> str:
    return ">" + line if line.lstrip(">").startswith("From ") else line


@given(
    messages=st.lists(_MESSAGE, max_size=8),
    eol=st.sampled_from(["\n", "\r\n"]),
    trailing=st.booleans(),
    chunk=st.integers(1, 300),
)
def test_mbox_round_trip(  # the file is written mboxrd-style: body "From " lines are quoted
    tmp_path_factory: pytest.TempPathFactory,
    messages: list[tuple[list[tuple[str, str]], list[str]]],
    eol: str,
    trailing: bool,
    chunk: int,
) -> None:
    lines: list[str] = []
    expected = []
    for fields, body in messages:
        header_lines = [f"{name}: {value}" for name, value in fields]
        lines += [
            "From sender@example.com Mon Jan  1 10:00:00 2024",
            *header_lines,
            "",
            *map(_quote, body),
            "",
        ]
        expected.append("".join(line + eol for line in header_lines).encode())
    if lines and not trailing:
        lines.pop()
    path = tmp_path_factory.mktemp("prop") / "p.mbox"
    path.write_bytes((eol.join(lines) + (eol if trailing and lines else "")).encode())
    pairs = read(MboxSource(path, chunk_size=chunk), "p.mbox")
    assert [raw.headers for raw, _ in pairs] == expected
    offsets = [json.loads(state)["offset"] for _, state in pairs]
    assert offsets == sorted(offsets)


_FRAGMENTS = st.sampled_from(
    [
        b"\n",
        b"\r\n",
        b"\r",
        b"From ",
        b"From x Mon Jan  1 10:00:00 2024\n",
        b"A: b\n",
        b"Subject: s\n",
        b":",
        b" ",
        b"x",
    ]
)


def reference_split(data: bytes) -> list[tuple[int, bytes]]:
    """The framing rule restated on the whole file: (uid, header block) of each message with headers."""
    first = len(data) - len(data.lstrip(b"\r\n"))
    starts = [first] if first < len(data) else []
    starts += [
        m.start(1)
        for m in re.finditer(rb"\n\r?\n(From [^\n]{0,4000}\n[\x21-\x39\x3b-\x7e]{1,200}:)", data)
        if m.start(1) > first
    ]
    out = []
    ends = [*starts[1:], len(data)] if starts else []
    for start, end in zip(starts, ends, strict=True):
        headers = header_block(strip_mbox_from_line(data[start:end]))
        if headers.strip():
            out.append((start + 1, headers))
    return out


@given(data=st.lists(_FRAGMENTS, max_size=60).map(b"".join), chunk=st.integers(1, 64))
def test_mbox_streaming_matches_the_whole_file_rule(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, chunk: int
) -> None:
    path = tmp_path_factory.mktemp("frag") / "f.mbox"
    path.write_bytes(data)
    pairs = read(MboxSource(path, chunk_size=chunk), "f.mbox")
    assert [(raw.uid, raw.headers) for raw, _ in pairs] == reference_split(data)
