"""A token bucket per client (an IPv4 address or an IPv6 /64: `state.client_network`), in
Redis so every web process shares it.

Only requests that start work (prompt URL misses, API submissions) take a token; cache hits
are free. The bucket holds `per_minute` tokens and refills at `per_minute` a minute, so a
page with many new embeds loads at once and a script hammering misses is slowed down.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from tasks.names import RATELIMIT_KEY

# KEYS[1] bucket; ARGV: capacity, refill per second, now, cost.
# Returns {allowed (1/0), milliseconds until a token is available}.
_TAKE = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local allowed = 0
local wait_ms = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  wait_ms = math.ceil((cost - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 1000)
return {allowed, wait_ms}
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: float  # seconds until the next token; 0 when allowed


class RateLimiter:
    def __init__(self, client: redis.Redis, per_minute: int) -> None:
        self.redis = client
        self.capacity = per_minute
        self.rate = per_minute / 60.0
        self._take = client.register_script(_TAKE)

    def take(self, client_address: str) -> Decision:
        """Take one token for this client, atomically across processes."""
        # The server's clock would be better than ours, but TIME in scripts needs Redis 5
        # replication settings; web processes on one host agree closely enough.
        allowed, wait_ms = self._take(keys=[RATELIMIT_KEY.format(client_address)],
                                      args=[self.capacity, self.rate, f"{time.time():.6f}", 1])
        return Decision(bool(allowed), int(wait_ms) / 1000.0)
