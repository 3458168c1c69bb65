"""Client-side pacing shared by every stream (and token call) of one tap process."""

from __future__ import annotations

import logging
import threading
import time
import typing as t

from pyrate_limiter import InMemoryBucket, Limiter, Rate

logger = logging.getLogger(__name__)


class RequestThrottle:
    """Never more than ``requests_per_second`` requests, across all streams.

    Pacing is one request per ``1 / requests_per_second`` seconds (no bursts), so the
    vendor never sees more than the allowed number in any one-second window.

    Vendors that meter a request pool (Heroku's ``RateLimit-Remaining``) are also
    respected: once the pool falls to ``pool_reserve`` or below, requests are spaced
    at the pool's refill rate instead of draining it into 429s.
    """

    def __init__(
        self,
        requests_per_second: float | None,
        *,
        pool_reserve: int = 0,
        pool_refill_per_second: float | None = None,
    ) -> None:
        self._limiter: Limiter | None = None
        if requests_per_second:
            interval_ms = max(1, round(1000 / requests_per_second))
            # buffer_ms is the limiter's oversleep; 1 ms keeps pacing at the nominal rate.
            self._limiter = Limiter(InMemoryBucket([Rate(1, interval_ms)]), buffer_ms=1)
        self._pool_reserve = pool_reserve
        self._pool_interval = 1 / pool_refill_per_second if pool_refill_per_second else 0.0
        self._pool_remaining: int | None = None
        self._last_request = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Block until the next request may be sent."""
        if self._limiter is not None:
            self._limiter.try_acquire("request")
        with self._lock:
            if self._pool_low():
                wait = self._last_request + self._pool_interval - time.monotonic()
                if wait > 0:
                    logger.info(
                        "Request pool low (%s left): pausing %.2f s", self._pool_remaining, wait
                    )
                    time.sleep(wait)
            self._last_request = time.monotonic()

    def observe(self, headers: t.Mapping[str, str]) -> None:
        """Read the vendor's remaining-pool header from a response."""
        remaining = headers.get("RateLimit-Remaining")
        if remaining is None:
            return
        try:
            self._pool_remaining = int(remaining)
        except ValueError:
            return

    def _pool_low(self) -> bool:
        return (
            self._pool_interval > 0
            and self._pool_remaining is not None
            and self._pool_remaining <= self._pool_reserve
        )

