"""heartbeats off the event log, and an index to prune it

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("agent_instances", sa.Column("last_heartbeat_delivery_id", sa.String(length=128), nullable=True))
    op.add_column("agent_instances", sa.Column("last_heartbeat_version", sa.BigInteger(), nullable=True))
    op.create_index(
        op.f("ix_agent_instances_last_heartbeat_delivery_id"),
        "agent_instances",
        ["last_heartbeat_delivery_id"],
        unique=True,
    )
    op.create_index(op.f("ix_callback_events_received_at"), "callback_events", ["received_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_callback_events_received_at"), table_name="callback_events")
    op.drop_index(op.f("ix_agent_instances_last_heartbeat_delivery_id"), table_name="agent_instances")
    with op.batch_alter_table("agent_instances") as batch:
        batch.drop_column("last_heartbeat_version")
        batch.drop_column("last_heartbeat_delivery_id")
