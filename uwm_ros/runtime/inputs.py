"""Joint states checked where they enter, and merged by name across publishers.

Several publishers often share /joint_states (an arm and a gripper), each naming its own joints
in any order. As the dataset converter does, the value of a joint is the one from the latest
message naming it, and each joint has its own stamp, so one silent publisher makes its joints
stale rather than the whole message stream. A message is refused whole, with the field named,
when its arrays disagree with its names or a tracked joint is not finite: nothing of it is used.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class InputError(ValueError):
    """A message that must not reach the model; ``field`` names the offending field."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field, self.detail = field, detail


class JointMerger:
    """Latest value and stamp per tracked joint, from any number of JointState publishers."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        self.index = {n: i for i, n in enumerate(self.names)}
        self.values = np.zeros(len(self.names))
        self.stamps = np.full(len(self.names), -np.inf)

    def reset(self) -> None:
        self.values[:] = 0.0
        self.stamps[:] = -np.inf

    def update(
        self, stamp: float, names: Sequence[str], positions: Sequence[float]
    ) -> np.ndarray | None:
        """Take one message; the merged positions once every tracked joint has a value (None
        before that, or when the message names none of them). Raises ``InputError``."""
        names = list(names)
        if not len(positions):  # effort- or velocity-only publishers: nothing to merge
            return None
        if len(positions) != len(names):
            raise InputError("position", f"{len(positions)} values for {len(names)} names")
        ours = [(i, n) for i, n in enumerate(names) if n in self.index]
        if not ours:
            return None
        seen: set[str] = set()
        for i, name in ours:
            if name in seen:
                raise InputError("name", f"joint {name!r} is named twice")
            seen.add(name)
            if not np.isfinite(positions[i]):
                raise InputError(f"position[{i}]", f"joint {name!r} is {positions[i]}")
        for i, name in ours:
            j = self.index[name]
            if stamp >= self.stamps[j]:  # a late message must not undo a newer value
                self.values[j], self.stamps[j] = positions[i], stamp
        if np.isneginf(self.stamps).any():
            return None
        return self.values.copy()

    def unseen(self) -> list[str]:
        return [n for n, s in zip(self.names, self.stamps) if np.isneginf(s)]

    def stale(self, now: float, max_age: float) -> dict[str, float]:
        """Joints whose newest value is older than ``max_age`` at ``now`` -> their age."""
        return {n: now - s for n, s in zip(self.names, self.stamps) if now - s > max_age}
