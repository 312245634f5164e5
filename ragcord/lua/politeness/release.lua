-- Gives a site's request slot back, keeps the site's mean request time, and closes the site's gate for a
-- while when the site asked for it (Retry-After on a 429 or 503) or when its robots.txt was just read and
-- names a Crawl-delay.
-- KEYS[1] leases  sorted set P:site:ORIGIN:leases (lease -> expiry, ms; a lease is `token@taken_at_ms`)
-- KEYS[2] gate    hash P:site:ORIGIN:gate: `next` (ms before which no request may start), `delay` (ms),
--                 `avg` (mean request time, ms)
-- ARGV[1] the lease (as acquire.lua returned it)
-- ARGV[2] back off: no request to the site for this many ms from now (0 for none)
-- ARGV[3] the crawl delay (ms) just learned from robots.txt, or -1 when nothing was learned
-- ARGV[4] how long the gate is kept after its last use (ms)
-- Returns the ms until the gate opens (0 when it is open).
local leases, gate = KEYS[1], KEYS[2]
local token, backoff, delay, keep = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local taken = tonumber(string.match(token, '@(%d+)$') or '')
if redis.call('ZSCORE', leases, token) and taken then
  local took = math.max(1, now - taken)
  local avg = tonumber(redis.call('HGET', gate, 'avg') or took)
  redis.call('HSET', gate, 'avg', math.floor(avg * 0.8 + took * 0.2))
  redis.call('ZREM', leases, token)
end
local opens = tonumber(redis.call('HGET', gate, 'next') or '0')
local wanted = now + backoff
if delay >= 0 then
  redis.call('HSET', gate, 'delay', delay)
  if now + delay > wanted then wanted = now + delay end
end
if wanted > opens then
  redis.call('HSET', gate, 'next', wanted)
  opens = wanted
end
redis.call('PEXPIRE', gate, keep + math.max(0, opens - now))
if opens > now then return opens - now end
return 0
