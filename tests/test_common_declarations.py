"""The shared declarations of tap_common on their own: typed export rows and windows."""

from __future__ import annotations

import datetime as dt
import typing as t

import pytest

from tap_common import windows
from tap_common.coercion import TypedRows
from tap_common.errors import PayloadError
from tap_common.windows import WindowedStream

SCHEMA = {"properties": {
    "id": {"type": "string"},
    "count": {"type": ["integer", "null"]},
    "score": {"type": ["number", "null"]},
    "beta": {"type": ["boolean", "null"]},
    "tags": {"type": ["array", "null"]},
}}


def test_typed_rows_convert_the_schema_types_and_leave_the_rest():
    rows = [{"id": "a", "count": "3", "score": "4.5", "beta": "true", "tags": "x"},
            {"id": "b", "count": None, "beta": "0"}]
    typed = list(TypedRows(SCHEMA).rows(iter(rows), where="s: export e"))
    assert typed == [{"id": "a", "count": 3, "score": 4.5, "beta": True, "tags": "x"},
                     {"id": "b", "count": None, "beta": False}]


def test_a_strict_value_that_does_not_convert_names_stream_export_line_and_value():
    rows = [{"count": "1"}, {"count": "1.5"}]
    with pytest.raises(PayloadError) as caught:
        list(TypedRows(SCHEMA).rows(iter(rows), where="usage: export 42"))
    assert str(caught.value) == "usage: export 42: line 2 has count='1.5', not a whole number"


def test_lenient_rows_turn_what_does_not_convert_into_null():
    coerce = TypedRows(SCHEMA, strict=False)
    assert coerce.row({"count": "2.0", "score": "n/a", "beta": "maybe"}) == {
        "count": 2, "score": None, "beta": None}


class _Stream(WindowedStream):
    replication_key = "day"

    def __init__(self, config: dict, state: dict | None = None) -> None:
        self.config = config
        self._state = state or {}

    def get_context_state(self, context: t.Any) -> dict:
        return self._state

    def saved_bookmark(self, context: t.Any = None) -> t.Any:
        # The base stream's reads the bookmark in any form (tests/test_state_cycle.py).
        return windows.saved_bookmark(self._state, self.replication_key)


TODAY = windows.utc_today()


def test_first_day_is_the_bookmark_less_the_lookback_never_before_start_date():
    class Stream(_Stream):
        lookback_days = 10
        lookback_setting = "lookback"

    bookmark = {"replication_key": "day", "replication_key_value": "2025-03-20T05:00:00Z"}
    assert Stream({}, bookmark).first_day() == dt.date(2025, 3, 10)
    assert Stream({"lookback": 2}, bookmark).first_day() == dt.date(2025, 3, 18)
    assert Stream({"start_date": "2025-03-15"}, bookmark).first_day() == dt.date(2025, 3, 15)
    assert Stream({"start_date": "2025-01-01"}).first_day() == dt.date(2025, 1, 1)
    assert Stream({}).first_day() is None  # no history declared: a full pull


def test_date_range_starts_at_its_period_and_ends_before_today_if_declared():
    class Stream(_Stream):
        history_days = 40
        align_to = "month"
        last_day_offset = 1

    first, last = Stream({}).date_range()
    assert last == TODAY - dt.timedelta(days=1)
    assert first == (TODAY - dt.timedelta(days=40)).replace(day=1)


def test_windows_cut_the_range_in_whole_days():
    class Stream(_Stream):
        window_days = 31

    cut = Stream({}).date_windows(dt.date(2025, 1, 1), dt.date(2025, 3, 5))
    assert cut == [(dt.date(2025, 1, 1), dt.date(2025, 1, 31)),
                   (dt.date(2025, 2, 1), dt.date(2025, 3, 3)),
                   (dt.date(2025, 3, 4), dt.date(2025, 3, 5))]
    assert Stream({}).date_windows(dt.date(2025, 1, 2), dt.date(2025, 1, 1)) == []
