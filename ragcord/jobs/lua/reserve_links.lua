-- Reserves a page's new links against the job's max_pages and seen-set, while the job runs and is not being
-- cancelled; each reserved link counts as discovered and outstanding. A new link refused because max_pages
-- was reached is counted once (distinct urls) in the job's `pages_beyond_max_pages`.
-- KEYS[1] job hash         P:job:{J}
-- KEYS[2] seen hash        P:job:{J}:seen (url -> url of the page that reserved it)
-- KEYS[3] beyond set       P:job:{J}:beyond (urls refused because max_pages was reached)
-- ARGV[1] the parent page's url
-- ARGV[2..] the links' urls
-- Returns {reserved, beyond}: the urls this parent reserved, now or on an earlier delivery of the same message
-- (so a redelivered page re-enqueues exactly its own children), and how many urls were newly counted beyond
-- max_pages (the caller adds them to the counters of all jobs).
local job, seen, beyond = KEYS[1], KEYS[2], KEYS[3]
local parent = ARGV[1]
local state = redis.call('HGET', job, 'state')
local open = state == 'RUNNING' and redis.call('HGET', job, 'cancel_requested') ~= '1'
local max_pages = tonumber(redis.call('HGET', job, 'max_pages'))
local mine, refused = {}, 0
for i = 2, #ARGV do
  local url = ARGV[i]
  local owner = redis.call('HGET', seen, url)
  if owner == parent then
    table.insert(mine, url)
  elseif not owner and open then
    if tonumber(redis.call('HGET', job, 'pages_discovered')) < max_pages then
      redis.call('HSET', seen, url, parent)
      redis.call('HINCRBY', job, 'pages_discovered', 1)
      redis.call('HINCRBY', job, 'outstanding', 1)
      table.insert(mine, url)
    elseif redis.call('SADD', beyond, url) == 1 then
      redis.call('HINCRBY', job, 'pages_beyond_max_pages', 1)
      refused = refused + 1
    end
  end
end
return {mine, refused}
