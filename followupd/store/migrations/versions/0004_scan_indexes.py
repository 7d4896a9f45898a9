"""indexes the hot queries need, found with EXPLAIN (tests/test_explain.py)

- ``ix_threads_last_sender``: the owed-reply check of every scan batch (``contacts_refresh._last_unanswered``)
  looks, per address of the contacts the batch touched, for person threads whose last message that address
  wrote. Without it PostgreSQL found them through the address's messages or by scanning every thread, and
  chose the scan as soon as its statistics lagged behind a growing table (up to 1 s a batch on a first scan).
- ``ix_addresses_email``: ``drafts list --contact ADDRESS`` finds the contact by address alone (any account);
  the unique (account_id, email) index cannot serve that, so PostgreSQL read every address.
- ``ix_messages_direction``: the planner's unanswered-questions loader reads the user's outbound messages of
  the awaiting_reply window (account, direction, date range); it read every message of the account.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("threads", schema=None) as batch_op:
        batch_op.create_index("ix_threads_last_sender", ["account_id", "last_sender"], unique=False)
    with op.batch_alter_table("addresses", schema=None) as batch_op:
        batch_op.create_index("ix_addresses_email", ["email"], unique=False)
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index("ix_messages_direction", ["account_id", "direction", "date_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_direction")
    with op.batch_alter_table("addresses", schema=None) as batch_op:
        batch_op.drop_index("ix_addresses_email")
    with op.batch_alter_table("threads", schema=None) as batch_op:
        batch_op.drop_index("ix_threads_last_sender")
