"""One socket's latest-wins outbox: at most one pending status per agent, and the version the client has."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from hub.domain.frames import StatusFrame


class Outbox:
    """Pending statuses of one socket, newest only: a slow socket holds at most one frame per agent
    it watches, so it never grows and never delays anyone else. Frames leave in the order their
    agents first became pending; a newer version replaces an older one in place."""

    __slots__ = ("_pending", "_versions")

    def __init__(self) -> None:
        self._pending: dict[str, StatusFrame] = {}
        # The newest version this client has of each agent: sent, or that it told us it had.
        self._versions: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def start(self, agent_id: str, known_version: int) -> None:
        """Begin watching ``agent_id``; the client says it already has ``known_version``."""
        self._versions[agent_id] = known_version

    def know(self, agent_id: str, version: int) -> None:
        """The client says it has ``version`` of an agent it already watches."""
        self._versions[agent_id] = max(self._versions.get(agent_id, 0), version)

    def offer(self, frame: StatusFrame) -> bool:
        """Keep ``frame`` when it is newer than what the client has and what is pending; True if kept."""
        agent_id = frame.agent_id
        if frame.version <= self._versions.get(agent_id, 0):
            return False
        pending = self._pending.get(agent_id)
        if pending is not None and frame.version <= pending.version:
            return False
        self._pending[agent_id] = frame
        if frame.delivery is not None:
            frame.delivery.hold()
        if pending is not None and pending.delivery is not None:
            pending.delivery.release(False)  # replaced: this socket will never write it
        return True

    def take(self) -> StatusFrame | None:
        """The next pending frame, counted as the client's once taken: a newer version arriving while
        it is being sent is pending again. The caller releases its delivery once sent (or not)."""
        pending = self._pending
        if not pending:
            return None
        agent_id = next(iter(pending))
        frame = pending.pop(agent_id)
        self._versions[agent_id] = frame.version
        return frame

    def write_while(self, write: Callable[[bytes], bool]) -> int:
        """Hand pending frames to ``write`` until it refuses one (which stays pending) or none are
        left; how many were written."""
        pending, versions = self._pending, self._versions
        written = 0
        while pending:
            agent_id = next(iter(pending))
            frame = pending[agent_id]
            if not write(frame.wire):
                break
            del pending[agent_id]
            versions[agent_id] = frame.version
            written += 1
            if frame.delivery is not None:
                frame.delivery.release(True)
        return written

    def held(self) -> dict[str, int]:
        """The version the client will have of each agent once what is pending is sent."""
        held = dict(self._versions)
        for agent_id, frame in self._pending.items():
            held[agent_id] = max(held.get(agent_id, 0), frame.version)
        return held

    def versions(self, agent_ids: Iterable[str]) -> dict[str, int]:
        return {agent_id: self._versions.get(agent_id, 0) for agent_id in agent_ids}

    def forget(self, agent_id: str) -> None:
        frame = self._pending.pop(agent_id, None)
        if frame is not None and frame.delivery is not None:
            frame.delivery.release(False)
        self._versions.pop(agent_id, None)

    def clear(self) -> None:
        for frame in self._pending.values():
            if frame.delivery is not None:
                frame.delivery.release(False)
        self._pending.clear()
        self._versions.clear()
