"""ISO weeks (``2026-W48``): their UTC bounds, the week before, and ``last`` (the last complete week)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from ratchet.errors import ConfigError

__all__ = ["LAST", "IsoWeek", "last_week", "parse_week"]

LAST = "last"
"""What ``parse_week`` reads as the last complete ISO week (the weekly job's ``--week last``)."""

_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")


@dataclass(frozen=True, slots=True)
class IsoWeek:
    """One ISO 8601 week: Monday 00:00 UTC up to (not including) the next Monday."""

    year: int
    week: int

    def __str__(self) -> str:
        return f"{self.year}-W{self.week:02d}"

    @property
    def start(self) -> datetime:
        return datetime.combine(date.fromisocalendar(self.year, self.week, 1), datetime.min.time(), UTC)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=7)

    @property
    def start_ms(self) -> int:
        return int(self.start.timestamp() * 1000)

    @property
    def end_ms(self) -> int:
        return int(self.end.timestamp() * 1000)

    def contains_ms(self, timestamp_ms: int) -> bool:
        """Whether an epoch-milliseconds timestamp falls in this week."""
        return self.start_ms <= timestamp_ms < self.end_ms

    def previous(self) -> IsoWeek:
        """The week before this one (across a year boundary too)."""
        year, week, _ = (self.start - timedelta(days=7)).isocalendar()
        return IsoWeek(year, week)


def last_week(now: datetime | None = None) -> IsoWeek:
    """The last complete ISO week before ``now`` (UTC): on any day of 2026-W49, ``2026-W48``."""
    now = datetime.now(UTC) if now is None else now.astimezone(UTC)
    year, week, _ = now.isocalendar()
    return IsoWeek(year, week).previous()


def parse_week(text: str, *, now: datetime | None = None) -> IsoWeek:
    """``"2026-W48"`` → :class:`IsoWeek`, ``"last"`` → :func:`last_week`; a clear ``ConfigError`` for anything
    else."""
    if text.strip().lower() == LAST:
        return last_week(now)
    match = _WEEK.match(text.strip())
    if not match:
        raise ConfigError(f"week {text!r} is not an ISO week: write YYYY-Www, e.g. 2026-W48 (or last)")
    year, week = int(match.group(1)), int(match.group(2))
    try:
        date.fromisocalendar(year, week, 1)
    except ValueError:
        weeks = date(year, 12, 28).isocalendar()[1]
        raise ConfigError(f"week {text!r} does not exist: {year} has weeks 01 to {weeks}") from None
    return IsoWeek(year, week)
