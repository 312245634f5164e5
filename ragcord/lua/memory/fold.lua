-- Replaces the oldest turns with a summary that covers them. Folds only when the summary and the head of the
-- list are still what was summarized (a concurrent fold or clear changed them otherwise); appends only touch
-- the tail.
-- KEYS[1] turns list       P:conv:C:turns (JSON turns, oldest first)
-- KEYS[2] summary string   P:conv:C:summary
-- ARGV[1] ttl (seconds) for the summary when the turns list has none
-- ARGV[2] the summary as read before summarizing ('' for none)
-- ARGV[3] the new summary
-- ARGV[4..] the folded turns' JSON exactly as read, oldest first (the head of the list)
-- Returns {folded, summary}: folded is 1 when the turns were folded, else 0; summary is the current one.
local n = #ARGV - 3
local current = redis.call('GET', KEYS[2]) or ''
if current ~= ARGV[2] then return {0, current} end
local head = redis.call('LRANGE', KEYS[1], 0, n - 1)
if #head ~= n then return {0, current} end
for i = 1, n do
  if head[i] ~= ARGV[i + 3] then return {0, current} end
end
redis.call('LTRIM', KEYS[1], n, -1)
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('SET', KEYS[2], ARGV[3], 'PX', ttl)
else
  redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[1])
end
return {1, ARGV[3]}
