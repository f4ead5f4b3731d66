"""the provisioning timeline: step times, the workflow's last word, stalls, step duration samples

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_PROVISIONING = "status IN ('pending', 'provisioning')"
_SILENT_RUNNING = "status = 'running' AND last_heartbeat_at IS NOT NULL AND stalled_since IS NULL"


def upgrade() -> None:
    # Nullable columns without defaults: a catalog change only on Postgres (no table rewrite). An
    # instance from before has no step times; its last word is taken to be its last change, so an
    # old provisioning left hanging is found by the stall watch like a new one.
    op.add_column("agent_instances", sa.Column("timeline", _DOCUMENT, nullable=True))
    op.add_column("agent_instances", sa.Column("last_callback_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("agent_instances", sa.Column("stalled_since", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE agent_instances SET last_callback_at = updated_at WHERE status IN ('pending', 'provisioning')")
    op.execute(
        "UPDATE agent_instances SET last_callback_at = last_heartbeat_at "
        "WHERE status = 'running' AND last_heartbeat_at IS NOT NULL"
    )
    op.create_index(
        "ix_agent_instances_silent_provisioning",
        "agent_instances",
        ["last_callback_at"],
        postgresql_where=sa.text(_PROVISIONING),
        sqlite_where=sa.text(_PROVISIONING),
    )
    op.create_index(
        "ix_agent_instances_silent_running",
        "agent_instances",
        ["last_callback_at"],
        postgresql_where=sa.text(_SILENT_RUNNING),
        sqlite_where=sa.text(_SILENT_RUNNING),
    )
    op.create_table(
        "step_durations",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("owner_id", sa.String(length=255), nullable=False),
        sa.Column("step", sa.String(length=64), nullable=False),
        sa.Column("instance_id", sa.Uuid(), nullable=False),
        sa.Column("seconds", sa.Double(), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["instance_id"],
            ["agent_instances.id"],
            name=op.f("fk_step_durations_instance_id_agent_instances"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_step_durations")),
    )
    op.create_index("ix_step_durations_owner_step", "step_durations", ["owner_id", "step", "completed_at"])
    op.create_index(op.f("ix_step_durations_instance_id"), "step_durations", ["instance_id"])
    op.create_index(op.f("ix_step_durations_completed_at"), "step_durations", ["completed_at"])


def downgrade() -> None:
    op.drop_table("step_durations")
    op.drop_index("ix_agent_instances_silent_running", table_name="agent_instances")
    op.drop_index("ix_agent_instances_silent_provisioning", table_name="agent_instances")
    with op.batch_alter_table("agent_instances") as batch:
        batch.drop_column("stalled_since")
        batch.drop_column("last_callback_at")
        batch.drop_column("timeline")
