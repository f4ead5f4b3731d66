"""a superseded instance leaves the stall watch's index of running agents

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SILENT_RUNNING_BEFORE = "status = 'running' AND last_heartbeat_at IS NOT NULL AND stalled_since IS NULL"
_SILENT_RUNNING = f"{_SILENT_RUNNING_BEFORE} AND superseded_at IS NULL"
_NEWER = (
    "FROM agent_instances AS newer "
    "WHERE newer.agent_id = agent_instances.agent_id AND newer.version > agent_instances.version"
)


def upgrade() -> None:
    # A running agent provisioned again keeps its old instance as it was, heartbeats and all; without
    # this column every such instance stayed in the running index for good, and each pass of the
    # stall watch read past all of them. Nullable, no default: a catalog change only on Postgres.
    op.add_column("agent_instances", sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        f"UPDATE agent_instances SET superseded_at = (SELECT min(newer.created_at) {_NEWER}) "
        f"WHERE EXISTS (SELECT 1 {_NEWER})"
    )
    _running_index(_SILENT_RUNNING)


def downgrade() -> None:
    _running_index(_SILENT_RUNNING_BEFORE)
    with op.batch_alter_table("agent_instances") as batch:
        batch.drop_column("superseded_at")


def _running_index(where: str) -> None:
    op.drop_index("ix_agent_instances_silent_running", table_name="agent_instances")
    op.create_index(
        "ix_agent_instances_silent_running",
        "agent_instances",
        ["last_callback_at"],
        postgresql_where=sa.text(where),
        sqlite_where=sa.text(where),
    )
