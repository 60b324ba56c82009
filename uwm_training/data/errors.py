"""Error classes of the data pipeline: every expected failure is one readable line.

The CLI catches ``DataError`` and prints it without a traceback (exit 2); anything else is a bug.
Errors cross process boundaries (conversion workers), so each one pickles by its arguments.
"""

from __future__ import annotations

from typing import Any


class DataError(Exception):
    """Base of every expected data-pipeline error."""


class ConfigError(DataError):
    """A conversion config value is missing, unknown or inconsistent (names the file and key)."""


class DatasetError(DataError):
    """A dataset store that is missing, incompatible with a request, or damaged."""


class VideoError(DataError):
    """A video file that cannot be read or written."""


class BagError(DataError):
    """A bag that cannot be read or converted; names the bag, and the topic and field if known."""

    def __init__(
        self, bag: Any, detail: str, topic: str | None = None, field: str | None = None
    ) -> None:
        self.bag, self.detail, self.topic, self.field = str(bag), detail, topic, field
        where = f"bag {self.bag}"
        if topic:
            where += f", topic {topic}"
        if field:
            where += f", field {field!r}"
        super().__init__(f"{where}: {detail}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.bag, self.detail, self.topic, self.field))
