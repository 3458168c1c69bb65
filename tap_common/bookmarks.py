"""Bookmarks read in any ISO form, at the stream's granularity, and never in the future.

A stream's replication key has a form: ``date`` (``2026-10-01``), ``date-time``
(``2026-10-01T10:00:00Z``, with or without a zone, ``T`` or a space) or ``month``
(``2026-10``). A bookmark in the state may have been written in another valid form,
by an earlier release or by someone typing ``meltano state set``: it is read in any of
them and brought to the stream's granularity before anything compares it, so
``2026-10-01`` for a month stream is the month 2026-10, and ``2026-10`` for a date
stream its first day. Anything else stops the run with one line naming the stream, the
value and the form expected.

No bookmark goes beyond the run's start: a vendor's value in the future (a clock or
data-entry error) would make every later run ask for rows after it and never see
today's. Such a row is emitted but does not advance the bookmark (``is_after``), and a
saved bookmark beyond the run's start is read as the run's start (``clamp``).
"""

from __future__ import annotations

import datetime
import typing as t

from singer_sdk.exceptions import FatalAPIError

DATE, DATE_TIME, MONTH = "date", "date-time", "month"
FORMS = {DATE: "a date (YYYY-MM-DD)",
         DATE_TIME: "a date-time (YYYY-MM-DDTHH:MM:SS, with or without a zone)",
         MONTH: "a month (YYYY-MM)"}
#: The schema's ``format`` of a replication key, as its form.
SCHEMA_FORMATS = {"date": DATE, "date-time": DATE_TIME}

#: A bookmark value at its granularity: a day (a month is its first day) or an instant.
Point = t.Union[datetime.date, datetime.datetime]


class BookmarkError(FatalAPIError):
    """A bookmark the tap cannot read (one line: the stream, the value, the form expected)."""


def parse_point(value: t.Any) -> Point | None:
    """A date, a date-time (naive read as UTC) or a month as the point it names; None
    when ``value`` is none of them."""
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)
    if isinstance(value, datetime.date):
        return value
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        if len(text) == 7 and text[4] == "-":  # noqa: PLR2004 - YYYY-MM
            return datetime.date(int(text[:4]), int(text[5:]), 1)
        if len(text) == 10:  # noqa: PLR2004 - YYYY-MM-DD
            return datetime.date.fromisoformat(text)
        if len(text) > 10 and text[10] in "T ":  # noqa: PLR2004
            # 3.11's fromisoformat reads Z, offsets, fractions and a space separator.
            moment = datetime.datetime.fromisoformat(text)
            return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return None
    return None


def at_granularity(point: Point, form: str) -> Point:
    """``point`` brought to ``form``: a date-time's day (as written, in its own zone),
    a day's month (its first day), a day's midnight UTC."""
    if form == DATE_TIME:
        if isinstance(point, datetime.datetime):
            return point
        return datetime.datetime.combine(point, datetime.time(), datetime.timezone.utc)
    day = point.date() if isinstance(point, datetime.datetime) else point
    return day.replace(day=1) if form == MONTH else day


def read(value: t.Any, form: str, *, stream: str, what: str = "bookmark") -> Point:
    """``value`` at the granularity of ``form``, or a one-line ``BookmarkError``."""
    point = parse_point(value)
    if point is None:
        msg = (f"{stream}: the {what} {value!r} is not an ISO date, date-time or month; "
               f"the stream expects {FORMS[form]}")
        raise BookmarkError(msg)
    return at_granularity(point, form)


def as_text(point: Point, form: str) -> str:
    """The bookmark's canonical text in ``form``."""
    point = at_granularity(point, form)
    if form == MONTH:
        return f"{point.year:04d}-{point.month:02d}"
    return point.isoformat()


def run_start_in(form: str, run_started: datetime.datetime) -> Point:
    """The run's start at the granularity of ``form``: its instant, its UTC day or month."""
    return at_granularity(run_started if form == DATE_TIME else run_started.date(), form)


def is_after(point: Point, form: str, run_started: datetime.datetime) -> bool:
    """Whether ``point`` lies beyond the run's start at the granularity of ``form`` (a
    row dated today is not; a date-time later than the run's start is)."""
    return at_granularity(point, form) > run_start_in(form, run_started)


class RunStartCheck:
    """``is_after`` for every record of a stream, cheap on the hot path.

    Most values are plainly before the run's start: their leading date (or month) sorts
    before a cutoff in the same form, which a string comparison of two ISO dates (or two
    months) decides. Only the others are parsed. For a date-time the cutoff is the day
    before the run's (a zone offset moves an instant by less than a day).
    """

    def __init__(self, form: str, run_started: datetime.datetime) -> None:
        self.form = form
        self.run_started = run_started
        day = run_started.date()
        if form == MONTH:
            self._width, self._cutoff = 7, f"{day.year:04d}-{day.month:02d}"
        elif form == DATE:
            self._width, self._cutoff = 10, day.isoformat()
        else:
            self._width, self._cutoff = 10, (day - datetime.timedelta(days=1)).isoformat()

    def is_after(self, value: t.Any, *, stream: str, what: str) -> bool:
        if isinstance(value, str) and len(value) >= self._width:
            head = value[:self._width]
            if head < self._cutoff and _iso_digits(head):
                return False
        return is_after(read(value, self.form, stream=stream, what=what), self.form,
                        self.run_started)


def _iso_digits(head: str) -> bool:
    """``YYYY-MM`` or ``YYYY-MM-DD`` in shape (digits and dashes where ISO puts them)."""
    return (head[4] == "-" and head[:4].isdigit() and head[5:7].isdigit()
            and (len(head) == 7 or (head[7] == "-" and head[8:10].isdigit())))


def clamp(point: Point, form: str, run_started: datetime.datetime) -> Point:
    """``point``, or the run's start if it is after it."""
    limit = run_start_in(form, run_started)
    point = at_granularity(point, form)
    return limit if point > limit else point
