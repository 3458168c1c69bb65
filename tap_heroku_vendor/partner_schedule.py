"""Partner mode at scale: which installs a run reads, within a request budget.

With ``request_budget`` set, a run does not re-read every install. It reads, in order:

1. installs that are **new or changed**: their entry in addons.heroku.com's list (or,
   without the listing, their presence in ``installs``) differs from the last time
   they were read;
2. the **rotation**: the installs read longest ago, enough of them that every install is
   re-read at least every ``full_refresh_nights`` runs ("nights");

and it never sends more Platform API requests than the budget (``RequestBudget``, at
the transport: retries and a token's renewal count too).

The state stays the same size whatever the number of installs. The installs are
hashed into ``BUCKETS`` buckets by resource uuid; per bucket the state keeps a 48-bit
digest of its installs' listing entries as last read, and the night it was last read
in full. A change in one install changes its bucket's digest, and the whole bucket is
read (a few installs at 100,000: a change is never missed, at the cost of reading its
neighbours). A bucket's digest and night move only once every install in it was read
to the end: a run killed or stopped by the budget reads the rest first next time.
"""

from __future__ import annotations

import array
import base64
import hashlib
import math
import threading
import typing as t
import zlib
from collections import defaultdict

import orjson

from tap_common.auth import origin

if t.TYPE_CHECKING:
    import requests

#: Buckets of installs (a power of two): 4096 x 8 bytes of state, about 40 KB encoded.
BUCKETS = 4096
DIGEST_BYTES = 6
STATE_VERSION = 1
#: How many completed buckets between two STATE messages (and one at the end).
STATE_EVERY_BUCKETS = 64
#: Fields of a listing entry that are not about the install (a timestamp of the answer).
VOLATILE_LISTING_FIELDS = frozenset({"requested_at", "generated_at"})


class BudgetSpent(Exception):  # noqa: N818  (a control-flow signal, not an error)
    """The run's request budget is spent: no further Platform API request is sent."""


def listing_fingerprint(entry: t.Mapping[str, t.Any]) -> str:
    """A short digest of one install's entry in addons.heroku.com's list."""
    kept = {k: v for k, v in entry.items() if k not in VOLATILE_LISTING_FIELDS}
    return hashlib.blake2b(orjson.dumps(kept, option=orjson.OPT_SORT_KEYS),
                           digest_size=8).hexdigest()


def bucket_of(resource_uuid: str) -> int:
    digest = hashlib.blake2b(resource_uuid.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def bucket_digest(members: t.Iterable[tuple[str, str]]) -> bytes:
    """The digest of a bucket's (uuid, fingerprint) pairs; all zeros for an empty one."""
    pairs = sorted(members)
    if not pairs:
        return bytes(DIGEST_BYTES)
    text = "\n".join(f"{uuid} {fingerprint}" for uuid, fingerprint in pairs)
    return hashlib.blake2b(text.encode(), digest_size=DIGEST_BYTES).digest()


# -- the budget ------------------------------------------------------------------------------


class RequestBudget:
    """At most ``limit`` requests to ``api_url`` in this run (counted before sending)."""

    def __init__(self, limit: int, api_url: str) -> None:
        self.limit = limit
        self.api_origin = origin(api_url)
        self.spent = 0
        self.refused = 0
        #: Installs whose reading a refusal cut short (they stay due).
        self.cut_short: set[str] = set()
        self._lock = threading.Lock()

    @property
    def remaining(self) -> int:
        return self.limit - self.spent

    @property
    def exhausted(self) -> bool:
        return self.refused > 0

    def admit(self, request: requests.PreparedRequest) -> None:
        if origin(request.url or "") != self.api_origin:
            return  # the token endpoint and addons.heroku.com are not the Platform API pool
        with self._lock:
            if self.spent >= self.limit:
                self.refused += 1
                raise BudgetSpent
            self.spent += 1


class BudgetedThrottle:
    """The tap's throttle, with the request budget checked first (by ``PacedAdapter``,
    for every request on the wire: retries and a renewed token's second try too)."""

    def __init__(self, inner: t.Any, budget: RequestBudget) -> None:
        self.__dict__["inner"] = inner
        self.__dict__["budget"] = budget

    def admit(self, request: requests.PreparedRequest) -> None:
        self.budget.admit(request)

    def __getattr__(self, name: str) -> t.Any:
        return getattr(self.inner, name)

    def __setattr__(self, name: str, value: t.Any) -> None:
        setattr(self.inner, name, value)  # ``key`` of a per-install throttle


# -- the state -------------------------------------------------------------------------------


class ScheduleState:
    """Per bucket: the digest as last read in full, and that night (0: never)."""

    def __init__(self, night: int = 0, digests: bytes | None = None,
                 last_read: array.array | None = None) -> None:
        self.night = night
        self.digests = bytearray(digests or bytes(BUCKETS * DIGEST_BYTES))
        self.last_read = last_read if last_read is not None else array.array("H", bytes(BUCKETS * 2))

    @classmethod
    def load(cls, saved: t.Any) -> ScheduleState:
        """The saved state, or a fresh one if there is none or it is of another layout."""
        if not isinstance(saved, dict) or saved.get("version") != STATE_VERSION \
                or saved.get("buckets") != BUCKETS:
            return cls()
        try:
            digests = zlib.decompress(base64.b64decode(saved["digests"]))
            nights = array.array("H")
            nights.frombytes(zlib.decompress(base64.b64decode(saved["last_read"])))
            night = int(saved["night"])
        except (KeyError, ValueError, TypeError, zlib.error):
            return cls()
        if len(digests) != BUCKETS * DIGEST_BYTES or len(nights) != BUCKETS:
            return cls()
        return cls(night, digests, nights)

    def dump(self) -> dict:
        def pack(data: bytes) -> str:
            return base64.b64encode(zlib.compress(data, 6)).decode()
        return {"version": STATE_VERSION, "buckets": BUCKETS, "night": self.night,
                "digests": pack(bytes(self.digests)), "last_read": pack(self.last_read.tobytes())}

    def digest(self, bucket: int) -> bytes:
        return bytes(self.digests[bucket * DIGEST_BYTES:(bucket + 1) * DIGEST_BYTES])

    def mark_read(self, bucket: int, digest: bytes, night: int) -> None:
        self.digests[bucket * DIGEST_BYTES:(bucket + 1) * DIGEST_BYTES] = digest
        self.last_read[bucket] = min(night, 0xFFFF)


# -- one run's plan --------------------------------------------------------------------------


class Schedule:
    """This night's order of installs, and the state it leaves.

    ``fingerprints`` maps each install to its listing entry's fingerprint ("" without
    the listing: then only new and removed installs count as changed).
    """

    def __init__(self, saved: t.Any, installs: t.Iterable[str], fingerprints: t.Mapping[str, str],
                 *, full_refresh_nights: int) -> None:
        self.state = ScheduleState.load(saved)
        self.night = self.state.night + 1
        self.full_refresh_nights = max(1, full_refresh_nights)
        self.members: dict[int, list[str]] = defaultdict(list)
        for resource in installs:
            self.members[bucket_of(resource)].append(resource)
        for resources in self.members.values():
            resources.sort()
        self.digests = {b: bucket_digest((u, fingerprints.get(u, "")) for u in resources)
                        for b, resources in self.members.items()}
        self.changed: list[int] = []
        self.rotation: list[int] = []
        self.left: dict[int, set[str]] = {}
        self.completed_since_write = 0
        self.buckets_completed = 0
        self.installs_read = 0
        self._plan()

    def age(self, bucket: int) -> int:
        """Nights since the bucket was last read in full (night - 0 for never)."""
        return self.night - self.state.last_read[bucket]

    def _plan(self) -> None:
        state = self.state
        empty = bytes(DIGEST_BYTES)
        for bucket in range(BUCKETS):
            if bucket not in self.members and state.digest(bucket) != empty:
                state.mark_read(bucket, empty, self.night)  # its installs are all gone
        stalest = sorted(self.members, key=lambda b: (state.last_read[b], b))
        # Changes to installs the warehouse has (and new installs among them) before the
        # buckets never read at all: during a first pass of many nights, a change is
        # still read the next night.
        self.changed = sorted((b for b in stalest if state.digest(b) != self.digests[b]),
                              key=lambda b: state.last_read[b] == 0)
        changed = set(self.changed)
        unchanged = [b for b in stalest if b not in changed]
        quota = math.ceil(len(self.members) / self.full_refresh_nights)
        # Every bucket at most full_refresh_nights old after this night: the stalest
        # first, their share of the week, and any that are overdue (a short budget before).
        quota = max(0, quota - len(self.changed))
        self.rotation = [b for n, b in enumerate(unchanged)
                         if n < quota or self.age(b) >= self.full_refresh_nights]
        self.left = {b: set(self.members[b]) for b in self.changed + self.rotation}

    def order(self) -> list[str]:
        """The installs to read this night, changed ones first."""
        return [u for b in self.changed + self.rotation for u in self.members[b]]

    def finished(self, resource: str) -> bool:
        """``resource`` was read to the end; True when that completed its bucket."""
        bucket = bucket_of(resource)
        left = self.left.get(bucket)
        if left is None:
            return False
        left.discard(resource)
        if left:
            return False
        del self.left[bucket]
        self.state.mark_read(bucket, self.digests[bucket], self.night)
        self.completed_since_write += 1
        self.buckets_completed += 1
        return True

    def dump(self) -> dict:
        self.state.night = self.night
        self.completed_since_write = 0
        return self.state.dump()

    def due_write(self) -> bool:
        return self.completed_since_write >= STATE_EVERY_BUCKETS

    # -- figures -----------------------------------------------------------------------

    def oldest_age(self) -> int | None:
        """After this night: nights since the stalest install was read (None: one never was)."""
        ages = [self.age(b) for b in self.members]
        if any(self.state.last_read[b] == 0 for b in self.members):
            return None
        return max(ages, default=0)

    def never_read(self) -> int:
        return sum(len(self.members[b]) for b in self.members if self.state.last_read[b] == 0)

    def figures(self) -> dict[str, t.Any]:
        return {
            "night": self.night, "buckets": len(self.members),
            "changed_buckets": len(self.changed), "rotation_buckets": len(self.rotation),
            "planned_installs": sum(len(self.members[b]) for b in self.changed + self.rotation),
            "buckets_completed": self.buckets_completed,
            "buckets_left": len(self.left), "oldest_age": self.oldest_age(),
            "never_read": self.never_read(), "installs": sum(map(len, self.members.values())),
            "installs_read": self.installs_read,
        }


def schedule_summary(tap: t.Any) -> tuple[str, str | None]:
    """The end-of-run line of a budgeted run: what was read, what is left, how stale
    the oldest install is, and, if the budget cannot keep the promise of
    ``full_refresh_nights``, the budget that would."""
    stream = tap.streams["addons"]
    schedule: Schedule | None = stream.__dict__.get("_schedule")
    budget: RequestBudget = tap.partner_budget
    if schedule is None:
        return f"partner schedule: nothing planned; {budget.spent} of {budget.limit} requests", None
    f = schedule.figures()
    oldest = ("some never read yet" if f["oldest_age"] is None
              else f"the oldest read {f['oldest_age']} night(s) ago")
    line = (f"partner schedule: night {f['night']}: {f['installs_read']} of {f['installs']} "
            f"install(s) read ({f['changed_buckets']} bucket(s) new or changed, "
            f"{f['rotation_buckets']} due in the rotation, {f['buckets_left']} planned bucket(s) "
            f"left); {budget.spent} of {budget.limit} budgeted requests; {oldest}")
    warning = None
    if f["installs_read"]:
        per_install = budget.spent / f["installs_read"]
        needed = math.ceil(per_install * f["installs"] / schedule.full_refresh_nights)
        if needed > budget.limit:
            nights = math.ceil(per_install * f["installs"] / budget.limit)
            warning = (f"partner schedule: at {per_install:.1f} requests an install, re-reading all "
                     f"{f['installs']} every {schedule.full_refresh_nights} nights needs a "
                     f"request_budget of about {needed} (plus changes); with {budget.limit} a "
                     f"full pass takes about {nights} nights")
    return line, warning
