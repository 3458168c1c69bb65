"""Windowed incremental reads, declared: where a read starts and how its range is cut.

A stream declares its numbers and ``WindowedStream`` does the date arithmetic once:

    lookback_days, lookback_setting   re-read this many days before the bookmark (rows
                                      that arrive dated behind it); the setting overrides
    history_days, history_setting     without a bookmark or ``start_date``: start this many
                                      days before today (None: no start, a full pull)
    align_to                          start on the first day of its ``week``/``month``
    last_day_offset                   the range ends this many days before today
    window_days                       cut the range into windows of at most this many days

The first day is the bookmark's day less the lookback, never before ``start_date`` nor
after the last day; without a bookmark ``start_date``, else the history.
"""

from __future__ import annotations

import datetime
import typing as t

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

Day = datetime.date
DAY = datetime.timedelta(days=1)


def utc_today() -> Day:
    return datetime.datetime.now(datetime.timezone.utc).date()


def day_of(value: t.Any) -> Day:
    """The day of a bookmark or setting: ``2025-07-02``, ``2025-07-02T10:00:00Z``, a
    date or a datetime (a read bookmark, ``tap_common.bookmarks``) …"""
    if isinstance(value, datetime.datetime):
        return value.date()
    if isinstance(value, datetime.date):
        return value
    return datetime.date.fromisoformat(str(value)[:10])


def saved_bookmark(state: t.Mapping[str, t.Any], replication_key: str | None) -> t.Any:
    """The bookmark a finished run left in ``state`` (None on a first run)."""
    if state.get("replication_key", replication_key) == replication_key:
        return state.get("replication_key_value")
    return None


# -- periods ---------------------------------------------------------------------------


def period_start(day: Day, unit: str) -> Day:
    """The first day of the period holding ``day``: weeks start on Sunday, months and years
    on the 1st (as Atlassian aligns its aggregates)."""
    if unit == "day":
        return day
    if unit == "week":
        return day - datetime.timedelta(days=(day.weekday() + 1) % 7)
    if unit == "month":
        return day.replace(day=1)
    if unit == "year":
        return day.replace(month=1, day=1)
    msg = f"unknown period unit {unit!r}"
    raise ValueError(msg)


def next_period(first: Day, unit: str) -> Day:
    if unit == "day":
        return first + DAY
    if unit == "week":
        return first + datetime.timedelta(days=7)
    if unit == "year":
        return first.replace(year=first.year + 1, month=1, day=1)
    return (first.replace(day=28) + datetime.timedelta(days=4)).replace(day=1)


def periods(start: Day, end: Day, unit: str) -> list[tuple[Day, Day]]:
    """Consecutive ``(first day, last day)`` periods covering ``start``..``end``.

    The first period starts on or before ``start`` (``period_start``).
    """
    first = period_start(start, unit)
    result = []
    while first <= end:
        following = next_period(first, unit)
        result.append((first, following - DAY))
        first = following
    return result


def windows(start: Day, end: Day, days: int) -> list[tuple[Day, Day]]:
    """``start``..``end`` (both included) in windows of at most ``days`` days."""
    result = []
    while start <= end:
        last = min(start + datetime.timedelta(days=days - 1), end)
        result.append((start, last))
        start = last + DAY
    return result


# -- the declaration -------------------------------------------------------------------


class WindowedStream:
    """Mixin for an incremental singer-sdk stream read over a date range (see the module)."""

    config: t.Mapping[str, t.Any]
    replication_key: str | None
    #: The saved bookmark, read and clamped to the run's start (the base stream's,
    #: ``tap_common.client.VendorRESTStream.saved_bookmark``).
    saved_bookmark: t.Callable[[Context | None], t.Any]

    lookback_days: t.ClassVar[int] = 0
    lookback_setting: t.ClassVar[str | None] = None
    history_days: t.ClassVar[int | None] = None
    history_setting: t.ClassVar[str | None] = None
    align_to: t.ClassVar[str | None] = None
    last_day_offset: t.ClassVar[int] = 0
    window_days: t.ClassVar[int | None] = None

    @property
    def lookback(self) -> int:
        if self.lookback_setting:
            return int(self.config.get(self.lookback_setting, self.lookback_days))
        return self.lookback_days

    @property
    def history(self) -> int | None:
        if self.history_setting:
            return int(self.config.get(self.history_setting, self.history_days))
        return self.history_days

    def alignment(self) -> str | None:
        """The period a range starts at the beginning of (``align_to``)."""
        return self.align_to

    def first_day(self, context: Context | None = None) -> Day | None:
        """The bookmark's day less ``lookback``, never before ``start_date``; without a
        bookmark ``start_date``, else ``history`` days back; None: read everything."""
        start_date = self.config.get("start_date")
        floor = day_of(start_date) if start_date else None
        bookmark = self.saved_bookmark(context) if self.replication_key else None
        if bookmark:
            # Never after the range's last day, as ``date_range`` clamps: a window that
            # would start after it reads nothing, and the days before it are lost.
            day = min(day_of(bookmark) - datetime.timedelta(days=self.lookback),
                      self.last_day())
            return max(day, floor) if floor else day
        if floor:
            return floor
        history = self.history
        return utc_today() - datetime.timedelta(days=history) if history is not None else None

    def last_day(self) -> Day:
        return utc_today() - datetime.timedelta(days=self.last_day_offset)

    def date_range(self, context: Context | None = None) -> tuple[Day, Day]:
        """``first_day`` (at the start of its period, never after the last day) ..
        ``last_day``. Needs a start: declare ``history_days`` for streams without one."""
        last = self.last_day()
        first = self.first_day(context)
        assert first is not None, "a date range needs history_days or a start_date"
        first = min(first, last)
        period = self.alignment()
        return (period_start(first, period) if period else first), last

    def date_windows(self, first: Day, last: Day | None = None) -> list[tuple[Day, Day]]:
        """``first``..``last_day`` in windows of ``window_days`` (one window if unset)."""
        last = self.last_day() if last is None else last
        if self.window_days is None:
            return [(first, last)] if first <= last else []
        return windows(first, last, self.window_days)
