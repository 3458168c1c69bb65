"""Every use of a private singer-sdk name (one with an underscore), in one place.

singer-sdk renames and retypes its private names between releases (0.55 does); keeping
them here makes an upgrade one file to read. Each use says why the public API does not
suffice. Nothing outside this module touches an SDK name that starts with ``_``.
"""

from __future__ import annotations

import datetime
import typing as t

from singer_sdk import RESTStream, Tap

if t.TYPE_CHECKING:
    import requests
    from singer_sdk.helpers.types import Context

    from tap_common.tap import VendorTap


class StreamInternals(RESTStream):
    """The private stream methods the shared base overrides; each forwards to a public
    method of ``VendorRESTStream`` that says what it does."""

    @property
    def tap(self) -> VendorTap:
        # ``_tap``: the stream's tap. The SDK keeps it private and offers no accessor;
        # streams need it for the tap's client and settings shared across streams.
        return self._tap  # type: ignore[return-value]

    @property
    def stream_version(self) -> int | None:
        # ``_stream_version``: the version a RECORD carries (full-table activate-version);
        # needed to write a RECORD line as the SDK would, and not exposed.
        return self._stream_version

    def _write_record_message(self, record: dict) -> None:
        # The only point where a record becomes a RECORD message; the SDK has no public
        # hook there, and its own path costs more than reading a million-row export.
        remaining = self.write_record_fast(record)
        if remaining is not None:
            super()._write_record_message(remaining)

    def write_record_fast(self, record: dict) -> dict | None:
        """Write ``record`` without the SDK's per-record steps (None), or give back the
        record for the SDK to write."""
        return record

    def _increment_stream_state(self, latest_record: dict, *,
                                context: Context | None = None) -> None:
        # The SDK recomputes the bookmark after every record, with no public way to skip
        # a record whose replication value did not change.
        if self.bookmark_may_advance(latest_record, context):
            super()._increment_stream_state(latest_record, context=context)

    def bookmark_may_advance(self, record: dict, context: Context | None) -> bool:
        return True

    def _write_starting_replication_value(self, context: Context | None) -> None:
        # The SDK reads a context's saved bookmark here, privately, at the start of each
        # context's sync (and compares it with ``start_date``); the saved value is
        # brought to the stream's form and to the run's start before that.
        self.normalise_saved_bookmark(context)
        super()._write_starting_replication_value(context)

    def normalise_saved_bookmark(self, context: Context | None) -> None:
        pass

    @property
    def run_started(self) -> datetime.datetime:
        # ``_initialized_at``: when the stream was created (ms since the epoch), the
        # instant the SDK caps date-time bookmarks at (its signpost); no accessor. The
        # same instant caps the bookmarks of every form (tap_common.bookmarks).
        return datetime.datetime.fromtimestamp(self._initialized_at / 1000.0,
                                               tz=datetime.timezone.utc)

    def log_request_duration(self, response: requests.Response, context: Context | None) -> None:
        # ``_write_request_duration_log``: the SDK's http_request_duration METRIC line,
        # written by its private ``_request``; the client sends the request instead, and
        # the line stays the same.
        self._write_request_duration_log(endpoint=self.path, response=response,
                                         context=context, extra_tags=None)


def mark_record_written(stream: RESTStream) -> None:
    """A RECORD was written past the SDK: the state has moved and is not yet written."""
    # ``state_manager.is_flushed`` is the SDK's "state written" flag (its class lives in
    # the private ``singer_sdk.streams._state``); nothing public sets it.
    stream.state_manager.is_flushed = False


def write_state_now(stream: RESTStream) -> None:
    """Write the tap's STATE now, even if the SDK thinks it has not changed.

    For a stream that moves its own state (an export in flight, a finished window): the
    SDK writes STATE only after records, through private methods (``is_flushed``,
    ``_write_state_message``); there is no public "write the state now".
    """
    stream.state_manager.is_flushed = False
    stream._write_state_message()  # noqa: SLF001


def finalize_state(stream: RESTStream) -> None:
    """Turn the stream's progress markers into its bookmark now (mid-sync, after a window
    that is complete), as the SDK does at the end of a sync."""
    stream.state_manager.finalize_state(stream.stream_state)


class TapInternals(Tap):
    """The private tap methods the shared base overrides."""

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        # The SDK validates the config here, privately, and its messages quote the
        # offending value (a secret one too); there is no public hook to word them.
        return self.validate_settings(raise_errors=raise_errors)

    def validate_settings(self, *, raise_errors: bool = True) -> list[str]:
        return super()._validate_config(raise_errors=raise_errors)

    @property
    def settings_as_given(self) -> dict:
        # ``_config``: the settings dict itself. The SDK's validator fills each missing
        # setting's default into the dict it validates; the public ``config`` is a
        # read-only view, and validating a copy of it would leave the defaults out.
        return self._config

    def _handle_termination(self, signum: int, frame: t.Any) -> None:  # type: ignore[override]
        # The SDK's SIGTERM/SIGINT handler writes the live state and exits 0; it is
        # registered privately and has no public hook.
        self.on_termination(signum)

    def on_termination(self, signum: int) -> None:
        super()._handle_termination(signum, None)  # type: ignore[arg-type]


def utc_now() -> datetime.datetime:
    """What ``singer_sdk.helpers._util.utc_now`` returns, without its private import."""
    return datetime.datetime.now(datetime.timezone.utc)
