"""several workers on one database: each worker's liveness lease, and finding the accounts a worker owns

``accounts.owner`` / ``accounts.lease_until`` (in 0001) say which worker scans, plans and sends for an
account until when; ``workers.lease_until`` says until when a worker counts as alive, for sharing the
accounts out fairly. Both are in the database's clock, so workers on machines with skewed clocks agree.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from followupd.store.types import UTCDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_until", UTCDateTime(), nullable=True))
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.create_index("ix_accounts_owner", ["owner"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_index("ix_accounts_owner")
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.drop_column("lease_until")
