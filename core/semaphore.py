"""A counting semaphore in Redis: at most ``limit`` holders across every process.

WeCom answers ``45033`` when one corp runs too many calls of an API at once, and our web and
worker processes cannot see each other's calls. Each holder is a member of a sorted set
scored by its lease's expiry (Redis server time, so process clocks do not matter); expired
members are purged before every acquire, so a crashed worker's slot comes back after its
lease instead of never. Acquire, renew and release are single Lua scripts (atomic).
"""
from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from redis import Redis

# now_ms from the server's clock; expired holders go before anything else is decided.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
"""

# KEYS[1] holders; ARGV token, limit, lease_ms → 1 acquired, 0 full
_ACQUIRE = _NOW + """
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
local lease = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
if redis.call('PTTL', KEYS[1]) < lease then
  redis.call('PEXPIRE', KEYS[1], lease)
end
return 1
"""

# KEYS[1] holders; ARGV token, lease_ms → 1 renewed, 0 lease already lost
_RENEW = _NOW + """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
local lease = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], 'XX', now + lease, ARGV[1])
if redis.call('PTTL', KEYS[1]) < lease then
  redis.call('PEXPIRE', KEYS[1], lease)
end
return 1
"""

# KEYS[1] holders → live holder count
_COUNT = _NOW + "return redis.call('ZCARD', KEYS[1])"


class SemaphoreTimeout(TimeoutError):
    """No slot became free within the wait."""


class Lease:
    """One held slot. ``release`` is idempotent; ``renew`` extends a long hold."""

    def __init__(self, semaphore: Semaphore, token: str) -> None:
        self.semaphore = semaphore
        self.token = token
        self.released = False

    def renew(self) -> bool:
        """False if the lease had already expired (another holder may have the slot now)."""
        return self.semaphore._renew(self.token)

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.semaphore._release(self.token)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class Semaphore:
    """``limit`` slots named ``name``; a slot is held for at most ``lease`` seconds.

    ``lease`` must outlast the work done under it (an expired lease lets an extra holder
    in); long holders call ``Lease.renew``.
    """

    def __init__(
        self,
        redis: Redis,
        name: str,
        limit: int,
        *,
        lease: float = 60.0,
        prefix: str = "linli:semaphore:",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if lease <= 0:
            raise ValueError("lease must be positive")
        self.redis = redis
        self.key = f"{prefix}{name}"
        self.limit = int(limit)
        self.lease_ms = max(1, int(lease * 1000))
        self._sleep = sleep
        self._acquire_script = redis.register_script(_ACQUIRE)
        self._renew_script = redis.register_script(_RENEW)
        self._count_script = redis.register_script(_COUNT)

    def try_acquire(self) -> Lease | None:
        token = secrets.token_hex(12)
        if self._acquire_script(keys=[self.key], args=[token, self.limit, self.lease_ms]):
            return Lease(self, token)
        return None

    def acquire(self, timeout: float | None = None) -> Lease:
        """Wait for a slot (polling with capped, jittered backoff); ``timeout`` None waits
        forever, 0 tries once. Raises ``SemaphoreTimeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.01
        while True:
            lease = self.try_acquire()
            if lease is not None:
                return lease
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SemaphoreTimeout(f"no free slot of {self.key} (limit {self.limit})")
            else:
                left = delay
            self._sleep(min(left, delay * (0.5 + random.random())))
            delay = min(delay * 2, 0.25)

    @contextmanager
    def hold(self, timeout: float | None = None) -> Iterator[Lease]:
        lease = self.acquire(timeout)
        try:
            yield lease
        finally:
            lease.release()

    def holders(self) -> int:
        """Live holders right now (for monitoring and tests)."""
        return int(self._count_script(keys=[self.key]))

    def _renew(self, token: str) -> bool:
        return bool(self._renew_script(keys=[self.key], args=[token, self.lease_ms]))

    def _release(self, token: str) -> None:
        self.redis.zrem(self.key, token)
