"""A log a person can read: one summary line per stream and one per run; the SDK's
METRIC lines only when asked for; the SDK's repeated notices at DEBUG.

The SDK logs a METRIC line (JSON) per request and every minute per counter: most of a
nightly run's log. It writes them through one public logger
(``singer_sdk.metrics.get_metrics_logger``), whose level this module raises unless the
``log_metrics`` setting is on or the run logs at DEBUG.
"""

from __future__ import annotations

import logging

from singer_sdk import metrics

#: SDK notices a nightly log repeats without telling anyone anything (the start of their
#: text): shown at DEBUG only.
SDK_NOTICES = (
    "Skipping parse of env var settings",
    "Stream is assumed to be unsorted",
    "Added '",  # "Added 'x' as child stream to 'y'", one per child stream, every run
)


#: SDK lines a stream repeats for every partition (each parent record of a child stream,
#: each period of a report): shown once per stream and text, unless at DEBUG.
SDK_REPEATS = (
    "Beginning sync of '",
    "Starting incremental sync of '",
)


#: Which run of this process the filters' "seen" sets belong to: a tap made again in the
#: same process (tests, an orchestrator that imports taps) starts with no repeats seen.
_run_number = [0]


def new_run() -> None:
    """A tap is starting a run: forget the repeats seen by any earlier one."""
    _run_number[0] += 1


class QuietNotices(logging.Filter):
    """Drops ``SDK_NOTICES`` and repeats of ``SDK_REPEATS`` unless the logger it sits on
    logs at DEBUG."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self.logger = logger
        self.seen: set[str] = set()
        self.run_number = _run_number[0]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.WARNING or not isinstance(record.msg, str):
            return True
        if self.logger.getEffectiveLevel() <= logging.DEBUG:
            return True
        if record.msg.startswith(SDK_NOTICES):
            return False
        if record.msg.startswith(SDK_REPEATS):
            if self.run_number != _run_number[0]:
                self.seen.clear()
                self.run_number = _run_number[0]
            text = record.getMessage()
            if text in self.seen:
                return False
            self.seen.add(text)
        return True


def quiet_sdk_notices(*loggers: logging.Logger) -> None:
    """Filter ``SDK_NOTICES`` and ``SDK_REPEATS`` out of ``loggers`` (the tap's, the SDK's,
    each stream's), once each."""
    for logger in loggers:
        if not any(isinstance(f, QuietNotices) for f in logger.filters):
            logger.addFilter(QuietNotices(logger))


def metrics_wanted(log_metrics: bool, tap_logger: logging.Logger) -> bool:  # noqa: FBT001
    """Whether the SDK's METRIC lines are logged: the setting, or a run at DEBUG (the SDK
    sets the metrics logger to the level of ``LOGLEVEL``; Meltano's ``--log-level``
    sets the root logger's)."""
    metrics_logger = metrics.get_metrics_logger()
    return (log_metrics or metrics_logger.level == logging.DEBUG
            or tap_logger.getEffectiveLevel() <= logging.DEBUG)


def set_metrics_logging(wanted: bool) -> None:  # noqa: FBT001
    """METRIC lines on (as the SDK set them) or off (the metrics logger above INFO)."""
    if not wanted:
        metrics.get_metrics_logger().setLevel(logging.WARNING)


def stream_summary(name: str, records: int, requests: int, retries: int,
                   seconds: float) -> str:
    """``licenses: 1,204 records, 13 requests (2 retried), 4.1 s``."""
    retried = f" ({retries:,} retried)" if retries else ""
    return (f"{name}: {records:,} record{'' if records == 1 else 's'}, {requests:,} "
            f"request{'' if requests == 1 else 's'}{retried}, {seconds:.1f} s")


def run_summary(tap: str, streams: int, records: int, requests: int, retries: int,
                seconds: float) -> str:
    """``tap-x: run complete: 3 streams, 1,204 records, 13 requests (2 retried), 4.1 s``."""
    retried = f" ({retries:,} retried)" if retries else ""
    return (f"{tap}: run complete: {streams} stream{'' if streams == 1 else 's'}, "
            f"{records:,} records, {requests:,} requests{retried}, {seconds:.1f} s")
