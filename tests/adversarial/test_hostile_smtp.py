"""Hostile SMTP servers: garbage, an undefined reply code, a disconnect or a stall at every phase of a send
(``tests/servers/hostile_smtp``). ``send_due`` never raises; a fault before the message data leaves the draft
retryable (APPROVED with an attempt counted) and a good server then gets it exactly once; a fault after the
data (the reply to the message itself) never leads to a second copy: UNKNOWN (or FAILED), never resent.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from followupd.engine.send import send_due
from followupd.store.db import Database
from tests.servers.hostile_smtp import PHASES, Action, HostileSmtp, Phase
from tests.servers.smtp import SmtpServer
from tests.test_send import NOW, Smtp, World, make_config, received_ids

pytestmark = pytest.mark.timeout(60)

ACTIONS: tuple[Action, ...] = ("disconnect", "stall", "garbage", "bogus_code")


@pytest.fixture
def world(db: Database, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setenv("SMTP_PW", "unused")
    return World(db)


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("action", ACTIONS)
def test_a_hostile_smtp_server_never_causes_a_crash_or_a_second_copy(
    world: World, smtp_server: SmtpServer, phase: Phase, action: Action
) -> None:
    draft_id = world.draft()
    with HostileSmtp(phase, action) as hostile:
        config = make_config(world.db, smtp=Smtp(hostile.port, timeout="1s"))
        send_due(world.db, config, now=NOW)
        assert hostile.faults_injected >= 1
        hostile_copies = len(hostile.received)
    draft = world.get(draft_id)
    assert draft.state != "sending", draft.state
    if phase != "END":
        assert hostile_copies == 0
        assert draft.state in ("approved", "failed"), (draft.state, draft.last_error)
        assert draft.last_error
    else:
        assert hostile_copies == 1
        assert draft.state in ("unknown", "failed", "sent"), (draft.state, draft.last_error)
    # Then a good server, later: a retryable draft goes exactly once; anything else never again.
    good = make_config(world.db, smtp=Smtp(smtp_server.port))
    send_due(world.db, good, now=NOW + timedelta(hours=2))
    again = world.get(draft_id)
    if draft.state == "approved":
        assert again.state == "sent" and received_ids(smtp_server) == [draft.message_id]
    else:
        assert smtp_server.messages == [] and again.state == draft.state
    assert hostile_copies + len(smtp_server.messages) <= 1
