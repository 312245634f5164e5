-- Takes one of a site's request slots, shared by every worker process on every host, if the site's gate
-- is open. A slot is a lease: a worker killed while holding one cannot keep it past its expiry. Times come
-- from the Redis server's clock, so workers on hosts whose clocks disagree still space their requests.
-- When every slot is busy the page joins the site's waiters (or keeps its place among them) and is told when
-- to come back: the waiters ahead of it, divided by the limit, times the site's mean request time. So pages
-- of a slow site come back about when a slot can be theirs, instead of cycling through the queue.
-- KEYS[1] leases   sorted set P:site:ORIGIN:leases (lease -> expiry, ms; a lease is `token@taken_at_ms`)
-- KEYS[2] gate     hash P:site:ORIGIN:gate: `next` (ms before which no request may start), `delay` (ms
--                  between request starts: the robots.txt Crawl-delay), `avg` (mean request time, ms)
-- KEYS[3] waiters  sorted set P:site:ORIGIN:waiters (page -> ms by which it should have come back)
-- ARGV[1] a token unique to this request
-- ARGV[2] limit: requests to the site in flight at once
-- ARGV[3] lease duration (ms)
-- ARGV[4] the crawl delay (ms) the caller knows, or -1 to use the one stored in the gate
-- ARGV[5] how long the gate is kept after its last use (ms)
-- ARGV[6] the waiting page's id (job and url)
-- ARGV[7] the longest a page is told to stay away (ms)
-- Returns {1, 0, 0, lease} when the slot is taken (`lease` names it for renew.lua and release.lua);
-- {0, wait, 0} when the gate opens in `wait` ms; {0, -1, back} when every slot is busy: the page should
-- come back in `back` ms.
local leases, gate, waiters = KEYS[1], KEYS[2], KEYS[3]
local token, limit, lease, delay, keep, waiter, longest =
  ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
redis.call('ZREMRANGEBYSCORE', waiters, '-inf', now)
local opens = tonumber(redis.call('HGET', gate, 'next') or '0')
if opens > now then return {0, opens - now, 0} end
if redis.call('ZCARD', leases) >= limit then
  local avg = tonumber(redis.call('HGET', gate, 'avg') or '500')
  -- A page that waited already keeps its place: only those due before it are ahead of it.
  local place = redis.call('ZSCORE', waiters, waiter)
  local ahead
  if place then
    ahead = redis.call('ZCOUNT', waiters, '-inf', '(' .. place)
  else
    ahead = redis.call('ZCARD', waiters)
  end
  local back = math.min(longest, math.max(100, math.floor((ahead / limit + 1) * avg)))
  redis.call('ZADD', waiters, now + back + 30000, waiter)
  redis.call('PEXPIRE', waiters, longest + 30000)
  return {0, -1, back}
end
redis.call('ZREM', waiters, waiter)
if delay < 0 then
  delay = tonumber(redis.call('HGET', gate, 'delay') or '0')
else
  redis.call('HSET', gate, 'delay', delay)
end
local held = token .. '@' .. now
redis.call('ZADD', leases, now + lease, held)
redis.call('PEXPIRE', leases, lease)
redis.call('HSET', gate, 'next', now + delay)
redis.call('PEXPIRE', gate, keep)
return {1, 0, 0, held}
