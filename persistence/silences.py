"""The stall watch's question: which newest instances' workflows have been silent too long. Each half
of the query reads one of the partial indexes on last_callback_at (see models.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from sqlalchemy import Table, bindparam, exists, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from persistence.models import ACTIVE_INSTANCE_STATUSES, AgentInstance

_instances: Table = AgentInstance.__table__  # type: ignore[assignment]
_newer = _instances.alias("newer")


def _inline(name: str, value: Any) -> Any:
    # Rendered into the SQL, not bound: a partial index serves a query only when the planner can see
    # that the query's condition implies the index's, which it cannot through a parameter.
    return bindparam(name, value, literal_execute=True, expanding=isinstance(value, tuple))


def _silent(*conditions: Any) -> Any:
    # superseded_at says it where this version of the hub wrote the row; "no newer instance" also covers
    # rows a replica of an older version superseded during a rolling upgrade.
    c = _instances.c
    newest = ~exists().where(_newer.c.agent_id == c.agent_id, _newer.c.version > c.version)
    return select(c.job_id, c.last_callback_at).where(*conditions, newest)


_c = _instances.c
_SILENT: Final = union_all(
    # Provisionings not heard from since the stall cutoff: to mark stalled, or (once marked) to fail
    # when also past the failure cutoff.
    _silent(
        _c.status.in_(_inline("provisioning", tuple(sorted(ACTIVE_INSTANCE_STATUSES)))),
        _c.last_callback_at < bindparam("stall_cutoff", type_=_c.last_callback_at.type),
        or_(
            _c.stalled_since.is_(None),
            _c.last_callback_at < bindparam("fail_cutoff", type_=_c.last_callback_at.type),
        ),
    ),
    # Running agents that heartbeat, not yet marked, whose last word is older than the heartbeat cutoff.
    _silent(
        _c.status == _inline("running", "running"),
        _c.last_heartbeat_at.is_not(None),
        _c.stalled_since.is_(None),
        _c.superseded_at.is_(None),
        _c.last_callback_at < bindparam("heartbeat_cutoff", type_=_c.last_callback_at.type),
    ),
)
_OLDEST_FIRST: Final = select(_SILENT.subquery("silent")).order_by("last_callback_at").limit(bindparam("batch"))


async def silent_jobs(
    connection: AsyncConnection,
    *,
    stall_cutoff: datetime,
    fail_cutoff: datetime,
    heartbeat_cutoff: datetime,
    batch: int,
) -> list[str]:
    """The jobs of newest instances whose workflow said nothing since a cutoff (pending or provisioning:
    ``stall_cutoff``, or ``fail_cutoff`` once marked stalled; running with heartbeats:
    ``heartbeat_cutoff``), longest silent first, at most ``batch``, by last_callback_at. Candidates
    only, a superset of the instances to change: the caller decides under the job's lock, on the
    whole row (see hub.domain.stall_rules.last_word)."""
    parameters = {
        "stall_cutoff": stall_cutoff,
        "fail_cutoff": fail_cutoff,
        "heartbeat_cutoff": heartbeat_cutoff,
        "batch": batch,
    }
    return list((await connection.execute(_OLDEST_FIRST, parameters)).scalars())
