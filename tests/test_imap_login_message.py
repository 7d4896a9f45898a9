"""A refused IMAP login reads as the server's words, not as a Python bytes literal."""

from __future__ import annotations

import pytest
from imapclient.exceptions import LoginError

from followupd import config as config_mod
from followupd.errors import AuthenticationError
from followupd.mail.imap import ImapSession, _text
from tests import mailgen
from tests.servers.plugin import Mailbox


def test_bytes_from_imapclient_are_decoded() -> None:
    assert _text(LoginError(b"[AUTHENTICATIONFAILED] Authentication failed.")) == (
        "[AUTHENTICATIONFAILED] Authentication failed."
    )
    assert _text(LoginError("b'[AUTHENTICATIONFAILED] Authentication failed.'")) == (
        "[AUTHENTICATIONFAILED] Authentication failed."
    )  # what imapclient really raises: str() of imaplib's bytes
    assert _text(LoginError("plain text")) == "plain text"
    assert _text(LoginError("b'unbalanced")) == "b'unbalanced"
    assert _text(LoginError()) == "LoginError"


@pytest.mark.dovecot
def test_refused_login_message_from_dovecot(mailbox: Mailbox) -> None:
    text = mailgen.config_toml(
        "sqlite://", mailgen.account_toml("main", mailbox.user, port=mailbox.dovecot.port)
    )
    account = config_mod.parse(text, env={"PW": "wrong"}).accounts[0]
    assert account.imap is not None
    with pytest.raises(AuthenticationError) as caught, ImapSession(account.imap, "not-the-password"):
        pass  # __enter__ logs in, and closes the socket when the login is refused
    message = str(caught.value)
    assert "AUTHENTICATIONFAILED" in message and mailbox.user in message
    assert "b'" not in message and 'b"' not in message
