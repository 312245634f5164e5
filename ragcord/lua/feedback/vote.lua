-- Records or moves a user's vote on an answer atomically, with the answer's and its cited sources' counts.
-- The votes expire with the answer, and the log forgets answers whose last vote is older than any answer kept.
-- KEYS[1] answer hash      P:answers:A (has `id`, `cited_urls` as JSON, and `up` / `down` counts)
-- KEYS[2] votes hash       P:answers:A:votes (user id -> up | down)
-- KEYS[3] log sorted set   P:feedback:log (answer ids by the time of their latest vote)
-- KEYS[4] counts hash      P:feedback:kb:K ("<url>|up" / "<url>|down" -> count)
-- ARGV[1] the user id
-- ARGV[2] the vote: 'up' or 'down'
-- ARGV[3] now (epoch seconds)
-- ARGV[4] seconds an answer is kept (FeedbackStore.ttl_seconds)
-- Returns the user's previous vote, or '' (the same vote again changes nothing); an error reply
-- 'no such answer' when the answer hash does not exist.
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('no such answer') end
local previous = redis.call('HGET', KEYS[2], ARGV[1]) or ''
if previous == ARGV[2] then return previous end
local urls = cjson.decode(redis.call('HGET', KEYS[1], 'cited_urls'))
for _, url in ipairs(urls) do
  if previous ~= '' then redis.call('HINCRBY', KEYS[4], url .. '|' .. previous, -1) end
  redis.call('HINCRBY', KEYS[4], url .. '|' .. ARGV[2], 1)
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
if previous ~= '' then redis.call('HINCRBY', KEYS[1], previous, -1) end
redis.call('ZADD', KEYS[3], ARGV[3], redis.call('HGET', KEYS[1], 'id'))
local left = redis.call('PTTL', KEYS[1])
if left > 0 then redis.call('PEXPIRE', KEYS[2], left) end
-- An answer voted on last before now - ttl was recorded before that too: it has expired.
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. (tonumber(ARGV[3]) - tonumber(ARGV[4])))
return previous
