-- Continues one conversation as another: appends the source's turns to the target's, joins the summaries
-- (target's first, one per line) and deletes the source.
-- KEYS[1] source turns list      P:conv:OLD:turns
-- KEYS[2] source summary string  P:conv:OLD:summary
-- KEYS[3] target turns list      P:conv:NEW:turns
-- KEYS[4] target summary string  P:conv:NEW:summary
-- ARGV[1] ttl (seconds) for the target's keys
-- ARGV[2] cap: keep at most this many target turns, dropping the oldest (0 = no cap)
-- Returns the number of turns moved.
local moved = redis.call('LRANGE', KEYS[1], 0, -1)
local summary = redis.call('GET', KEYS[2])
if #moved == 0 and not summary then return 0 end
for i = 1, #moved do redis.call('RPUSH', KEYS[3], moved[i]) end
if summary then
  local existing = redis.call('GET', KEYS[4])
  if existing and existing ~= '' then summary = existing .. '\n' .. summary end
  redis.call('SET', KEYS[4], summary)
end
redis.call('DEL', KEYS[1], KEYS[2])
local cap = tonumber(ARGV[2])
if cap > 0 then redis.call('LTRIM', KEYS[3], -cap, -1) end
redis.call('EXPIRE', KEYS[3], ARGV[1])
redis.call('EXPIRE', KEYS[4], ARGV[1])
return #moved
