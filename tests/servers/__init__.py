"""Real servers on 127.0.0.1 for tests and benchmarks: Dovecot (IMAP), aiosmtpd (SMTP), PostgreSQL.

The classes work without pytest (benchmarks use them directly); ``tests.servers.plugin`` wraps them in
fixtures.
"""

from tests.servers.dovecot import Dovecot, DovecotError
from tests.servers.postgres import Postgres, PostgresError
from tests.servers.smtp import AuthAttempt, ReceivedMessage, SmtpServer, SmtpServerError

__all__ = [
    "AuthAttempt",
    "Dovecot",
    "DovecotError",
    "Postgres",
    "PostgresError",
    "ReceivedMessage",
    "SmtpServer",
    "SmtpServerError",
]
