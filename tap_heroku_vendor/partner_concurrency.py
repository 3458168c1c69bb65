"""Concurrent reads across installs, when each install's token has its own pool.

With ``rate_limit_scope: per_install`` Heroku meters each token separately, so the
run's pace is the round trips of one install after another, not the pool. Then
``concurrent_installs`` workers read the next installs ahead of the streams: each
worker runs the very requests the streams would send (``request_records`` of the
install's addon, its children, and theirs), with that install's token and that
install's pool (both per thread), through the tap's one client and its transport
(pacing, budget, retries, checks). The streams then take the answers in order, so
the records, their order, the state and the error lines are those of a sequential run.

A worker's failure is kept and raised when the stream reaches that install, as the
sequential run would have raised it there.
"""

from __future__ import annotations

import threading
import typing as t
from concurrent.futures import Future, ThreadPoolExecutor

from tap_heroku_vendor.partner import PartnerSession, PerInstallThrottle

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context


class PerThread:
    """An attribute whose value is per thread (the install a thread is reading)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: t.Any, owner: type | None = None) -> t.Any:
        if obj is None:
            return self
        return getattr(obj.__dict__["_per_thread"], self.name, None)

    def __set__(self, obj: t.Any, value: t.Any) -> None:
        setattr(obj.__dict__["_per_thread"], self.name, value)


class ConcurrentPartnerSession(PartnerSession):
    """``PartnerSession`` whose current install is per thread."""

    current = PerThread()

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        self.__dict__["_per_thread"] = threading.local()
        super().__init__(*args, **kwargs)


class ConcurrentPerInstallThrottle(PerInstallThrottle):
    """``PerInstallThrottle`` whose install (``key``) is per thread."""

    key = PerThread()

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        self.__dict__["_per_thread"] = threading.local()
        self._pools_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def _pool(self) -> t.Any:
        with self._pools_lock:
            return super()._pool()

    def forget(self, key: str) -> None:
        with self._pools_lock:
            super().forget(key)


class InstallPrefetcher:
    """Reads installs ahead of the streams, ``workers`` at a time."""

    def __init__(self, addons_stream: t.Any, workers: int) -> None:
        self.stream = addons_stream
        self.session: PartnerSession = addons_stream.session
        self.window = workers * 2
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="install")
        self.jobs: dict[str, Future] = {}
        self.results: dict[tuple, t.Any] = {}
        self.claimed_apps: set[str] = set()
        self.lock = threading.Lock()
        self.local = threading.local()
        self.closed = False

    # -- the main thread ----------------------------------------------------------------

    def ahead(self, order: t.Sequence[str], position: int, may_submit: t.Callable[[], bool]) -> None:
        """Installs ``position`` .. ``position + window`` of ``order`` are being read."""
        for resource in order[position:position + self.window]:
            if resource in self.jobs:
                continue
            if self.closed or not may_submit():
                return
            self.jobs[resource] = self.executor.submit(self.read_install, resource)

    def in_flight(self) -> int:
        """Installs whose workers are still sending requests."""
        return sum(1 for job in self.jobs.values() if not job.done())

    def submitted(self, resource: str) -> bool:
        return resource in self.jobs

    def take(self, stream_name: str, context: Context) -> t.Any:
        """The records (or the failure) a worker got for this stream and context; None
        if no worker read them (the stream then sends its requests itself)."""
        if self.in_worker():
            return None
        job = self.jobs.get(context["resource_uuid"])
        if job is None:
            return None
        job.result()
        with self.lock:
            return self.results.pop(_key(stream_name, context), None)

    def done(self, resource: str) -> None:
        """The streams are past this install: what is left of it is not needed."""
        self.jobs.pop(resource, None)
        with self.lock:
            for key in [k for k in self.results if k[1] == resource]:
                del self.results[key]

    def close(self) -> None:
        self.closed = True
        self.executor.shutdown(wait=True, cancel_futures=True)

    # -- the workers ---------------------------------------------------------------------

    def in_worker(self) -> bool:
        return getattr(self.local, "worker", False)

    def read_install(self, resource: str) -> None:
        self.local.worker = True
        self.session.use(resource)
        try:
            self.read(self.stream, {"resource_uuid": resource})
        finally:
            self.session.use(None)  # type: ignore[arg-type]

    def read(self, stream: t.Any, context: Context) -> None:
        if stream.name == "partner_apps" and not self.claim_app(context.get("app_id")):
            return  # no app, or another install's worker reads it
        try:
            records = list(stream.live_records(context))
        except Exception as exc:  # noqa: BLE001  (raised where the stream reaches it)
            with self.lock:
                self.results[_key(stream.name, context)] = exc
            return
        # The ETags are kept only when the stream emits these records (if it does).
        etags = stream.etags.take_deferred() if stream.etags else []
        with self.lock:
            self.results[_key(stream.name, context)] = (records, etags)
        children = [c for c in stream.child_streams if c.selected or c.has_selected_descendents]
        if not children:
            return
        for record in records:
            processed = stream.post_process(dict(record), context)
            for child_context in stream.generate_child_contexts(processed, context):
                for child in children:
                    self.read(child, child_context)

    def claim_app(self, app_id: str | None) -> bool:
        if not app_id:
            return False
        with self.lock:
            if app_id in self.claimed_apps or app_id in self.session.synced_apps:
                return False
            self.claimed_apps.add(app_id)
            return True


def _key(stream_name: str, context: Context) -> tuple:
    return (stream_name, context.get("resource_uuid"), context.get("app_id"))
