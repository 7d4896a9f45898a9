"""meetings from the scan: arrangements, meeting state and last end, the meetings cursor of a folder

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from followupd.store.types import UTCDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "arrangements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=998), nullable=False),
        sa.Column("thread_key", sa.String(length=998), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=False),
        sa.Column("from_user", sa.Boolean(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("start_at", UTCDateTime(), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("has_day", sa.Boolean(), nullable=False),
        sa.Column("has_time", sa.Boolean(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('proposal', 'confirmation', 'reschedule', 'cancel')", name=op.f("ck_arrangements_kind")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_arrangements_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_arrangements")),
        sa.UniqueConstraint("account_id", "message_id", name=op.f("uq_arrangements_account_id")),
    )
    with op.batch_alter_table("arrangements", schema=None) as batch_op:
        batch_op.create_index("ix_arrangements_thread", ["account_id", "thread_key"], unique=False)
    with op.batch_alter_table("folders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("meetings_cursor", sa.Text(), nullable=True))
    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("state", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("counts", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("last_end_at", UTCDateTime(), nullable=True))
    with op.batch_alter_table("meeting_attendees", schema=None) as batch_op:
        batch_op.create_index("ix_meeting_attendees_email", ["email"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("meeting_attendees", schema=None) as batch_op:
        batch_op.drop_index("ix_meeting_attendees_email")
    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.drop_column("last_end_at")
        batch_op.drop_column("counts")
        batch_op.drop_column("state")
    with op.batch_alter_table("folders", schema=None) as batch_op:
        batch_op.drop_column("meetings_cursor")
    with op.batch_alter_table("arrangements", schema=None) as batch_op:
        batch_op.drop_index("ix_arrangements_thread")
    op.drop_table("arrangements")
