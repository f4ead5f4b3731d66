"""a provisioning job bound to the GitHub repository that may report it

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: existing jobs stay open to every accepted credential, and the ALTER is
    # a catalog change only (no table rewrite) on Postgres.
    op.add_column("provisioning_jobs", sa.Column("repository_id", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("provisioning_jobs") as batch:
        batch.drop_column("repository_id")
