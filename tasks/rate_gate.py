"""arXiv's "one request every 3 seconds", shared by every worker process and machine.

Redis holds a single key: the earliest time (milliseconds, Redis's own clock)
at which the next request may be sent. Reserving a slot is one Lua script, so
it is atomic: it reads the clock with TIME, takes the later of "now" and the
stored next-free time as this caller's slot, and pushes the next-free time one
interval past it. Workers whose clocks disagree, or that reserve at the same
instant, still get distinct slots one interval apart. The key expires shortly
after its next-free time, when it no longer constrains anyone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

import redis

from tasks.constants import ARXIV_GATE_KEY

# The key outlives its next-free time by this margin, so that rounding in the
# millisecond arithmetic can never make it vanish while it still holds a request back.
_EXPIRY_MARGIN_MS: Final = 1000

# KEYS[1]: the gate key. ARGV[1]: the interval, ARGV[2]: the expiry margin, in ms.
# Returns how many milliseconds the caller must wait until its slot.
_RESERVE_SCRIPT: Final = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local interval = tonumber(ARGV[1])
local next_free = tonumber(redis.call('GET', KEYS[1]) or 0) or 0
local slot = math.max(now, next_free)
local new_next_free = slot + interval
redis.call('SET', KEYS[1], new_next_free, 'PX', new_next_free - now + tonumber(ARGV[2]))
return slot - now
"""

# KEYS[1]: the gate key. Read-only: milliseconds until the next free slot.
_COOLDOWN_SCRIPT: Final = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local next_free = tonumber(redis.call('GET', KEYS[1]) or 0) or 0
return math.max(0, next_free - now)
"""


class ArxivRateGate:
    """One request every `min_interval_seconds` across every worker process and machine.

    Slots are reserved atomically with a Lua script using Redis's own clock
    (TIME), so worker clocks do not matter and two workers can never take the
    same slot. min_interval_seconds == 0 turns the gate off (no Redis call).
    """

    def __init__(
        self,
        redis: redis.Redis,
        min_interval_seconds: float,
        key: str = ARXIV_GATE_KEY,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """
        Args:
            redis: the shared Redis (decode_responses may be True or False).
            min_interval_seconds: the least time between two requests' slots;
                0 disables the gate. Millisecond precision.
            key: the Redis key holding the next free slot.
            sleep: how `wait_for_turn` waits; tests pass a recorder.
        """
        if min_interval_seconds < 0:
            raise ValueError(f"min_interval_seconds must be 0 or more, got {min_interval_seconds}")
        self._interval_ms = round(min_interval_seconds * 1000)
        self._key = key
        self._sleep = sleep
        # register_script only hashes the text; nothing is sent until first use,
        # and redis-py loads the script again by itself if Redis has forgotten it.
        self._reserve_script = redis.register_script(_RESERVE_SCRIPT)
        self._cooldown_script = redis.register_script(_COOLDOWN_SCRIPT)

    @property
    def enabled(self) -> bool:
        return self._interval_ms > 0

    def reserve(self) -> float:
        """Reserve the next free slot; return the seconds to wait until it (0 if free now)."""
        if not self.enabled:
            return 0.0
        wait_ms = self._reserve_script(
            keys=[self._key], args=[self._interval_ms, _EXPIRY_MARGIN_MS]
        )
        return int(wait_ms) / 1000

    def wait_for_turn(self) -> float:
        """Reserve a slot, sleep until it comes, and return the seconds waited."""
        wait_seconds = self.reserve()
        if wait_seconds > 0:
            self._sleep(wait_seconds)
        return wait_seconds

    def cooldown_remaining(self) -> float:
        """Seconds until the next free slot, without reserving it (for health reports)."""
        if not self.enabled:
            return 0.0
        remaining_ms = self._cooldown_script(keys=[self._key])
        return int(remaining_ms) / 1000
