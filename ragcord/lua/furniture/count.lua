-- Counts one page's blocks for the crawl's furniture (ragcord/knowledge/furniture.py).
-- KEYS[1] block counts hash  P:job:{J}:blocks       (block hash -> pages holding it)
-- KEYS[2] counted pages set  P:job:{J}:block-pages  (urls whose blocks are counted)
-- ARGV[1] ttl in seconds (the keys live that long after the last page)
-- ARGV[2] the page's url; ARGV[3], ... its block hashes, each once
-- A page is counted once, however often it is retried. Returns the number of pages counted, then, per
-- block hash, the pages holding it.
if redis.call('SADD', KEYS[2], ARGV[2]) == 1 then
  for i = 3, #ARGV do
    redis.call('HINCRBY', KEYS[1], ARGV[i], 1)
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[1])
local out = {redis.call('SCARD', KEYS[2])}
for i = 3, #ARGV do
  table.insert(out, tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or 0))
end
return out
