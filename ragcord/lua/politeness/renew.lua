-- Extends the leases a live worker holds on a site's request slots, so only a dead worker's slots expire.
-- KEYS[1] leases  sorted set P:site:ORIGIN:leases (lease token -> expiry, ms)
-- ARGV[1] lease duration (ms) from now
-- ARGV[2..] the tokens of the leases this worker holds on the site
-- Returns how many of them were still held (a released or expired lease is not brought back).
local leases = KEYS[1]
local lease = tonumber(ARGV[1])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local kept = 0
for i = 2, #ARGV do
  local expiry = redis.call('ZSCORE', leases, ARGV[i])
  if expiry and tonumber(expiry) > now then
    redis.call('ZADD', leases, 'XX', now + lease, ARGV[i])
    kept = kept + 1
  end
end
if kept > 0 then redis.call('PEXPIRE', leases, lease) end
return kept
