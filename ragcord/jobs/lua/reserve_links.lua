-- Reserves a page's new links against the job's max_pages and seen-set, while the job runs and is not being
-- cancelled; each reserved link counts as discovered and outstanding.
-- KEYS[1] job hash         P:job:J
-- KEYS[2] seen hash        P:job:J:seen (url -> url of the page that reserved it)
-- ARGV[1] the parent page's url
-- ARGV[2..] the links' urls
-- Returns the urls this parent reserved, now or on an earlier delivery of the same message, so a redelivered
-- page re-enqueues exactly its own children.
local job, seen = KEYS[1], KEYS[2]
local parent = ARGV[1]
local state = redis.call('HGET', job, 'state')
local open = state == 'RUNNING' and redis.call('HGET', job, 'cancel_requested') ~= '1'
local max_pages = tonumber(redis.call('HGET', job, 'max_pages'))
local mine = {}
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
    end
  end
end
return mine
