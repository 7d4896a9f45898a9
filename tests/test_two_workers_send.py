"""Issue 10: two workers on one PostgreSQL database and 500 approved drafts; every draft is sent exactly once.

Two separate OS processes (:mod:`tests.send_worker`) run ``send_due`` over *every* account, so they race for
the same drafts, against one aiosmtpd server that answers each message a moment later (so that the other
worker gets to claim drafts while a message is in flight). Ten accounts of 50 drafts: the caps are per
account, and ``per_minute`` (at most 60) would otherwise hold the drafts back at the runs' fixed ``now``.
"""

from __future__ import annotations

import email
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from followupd.store.db import Database
from followupd.store.models import Draft
from tests.send_worker import config_text, seed
from tests.servers.smtp import SmtpServer

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[1]
ACCOUNTS = [f"acct{i}" for i in range(10)]
PER_ACCOUNT = 50
WORKERS = ("w1", "w2")


def test_two_workers_send_every_draft_exactly_once(
    postgres_url: str, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    db = Database(postgres_url)
    try:
        db.upgrade()
        ids = seed(db, ACCOUNTS, PER_ACCOUNT)
        with db.read() as session:
            message_ids = {i: m for i, m in session.execute(select(Draft.id, Draft.message_id))}
    finally:
        db.dispose()
    assert len(ids) == 500
    config = tmp_path / "config.toml"
    config.write_text(config_text(postgres_url, ACCOUNTS, smtp_port=smtp_server.port))
    smtp_server.set_mode("stall", seconds=0.01)

    env = {**os.environ, "PYTHONPATH": str(REPO), "SMTP_PW": "unused"}
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.send_worker", str(config), str(tmp_path), name],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in WORKERS
    ]
    try:
        deadline = time.monotonic() + 30
        while not all((tmp_path / f"{name}.ready").exists() for name in WORKERS):
            for w in workers:
                assert w.poll() is None, f"a worker died while starting: {w.communicate()[1]}"
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.01)
        (tmp_path / "go").touch()
        outputs = [w.communicate(timeout=90) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    for w, (_out, err) in zip(workers, outputs, strict=True):
        assert w.returncode == 0, err
    reports = {}
    for out, _err in outputs:
        line = json.loads(out.strip().splitlines()[-1])
        reports[line["worker"]] = line["sent"]

    # At the SMTP server: 500 messages, each draft's Message-ID exactly once.
    received = Counter(email.message_from_bytes(m.content)["Message-ID"] for m in smtp_server.messages)
    assert len(smtp_server.messages) == 500
    assert received == Counter({message_id: 1 for message_id in message_ids.values()})

    # In the database: every draft SENT.
    db = Database(postgres_url)
    try:
        with db.read() as session:
            states = Counter(session.scalars(select(Draft.state)))
    finally:
        db.dispose()
    assert states == Counter({"sent": 500})

    # Each worker sent some, and together exactly the 500, none by both.
    sent = [set(reports[name]) for name in WORKERS]
    assert all(sent), {name: len(reports[name]) for name in WORKERS}
    assert sum(len(reports[name]) for name in WORKERS) == 500
    assert not sent[0] & sent[1] and sent[0] | sent[1] == set(ids)
