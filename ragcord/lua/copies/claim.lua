-- Claims the chunks of one page in a crawl's chunk-owner index: which page first published each chunk's text.
-- KEYS[1] owners hash   P:job:ID:chunk-owners (fingerprint -> "url\nchunk_index" of the page that owns it)
-- KEYS[2] sizes hash    P:job:ID:page-chunks  (url -> how many fingerprinted chunks the page has)
-- ARGV[1] the page's url
-- ARGV[2] how many fingerprinted chunks the page has
-- ARGV[3] seconds both keys live after the last claim
-- ARGV[4], ARGV[5], ... pairs of (fingerprint, chunk index)
-- Unowned fingerprints (or ones this page already owns) become this page's. Returns, per pair, "" when the
-- page owns the fingerprint now, else the owner's "url\nchunk_index", followed by that owner's size.
local url = ARGV[1]
redis.call('HSET', KEYS[2], url, ARGV[2])
local result = {}
for i = 4, #ARGV, 2 do
  local owner = redis.call('HGET', KEYS[1], ARGV[i])
  if owner and string.sub(owner, 1, #url + 1) ~= url .. '\n' then
    local owner_url = string.match(owner, '^(.*)\n')
    table.insert(result, owner)
    table.insert(result, redis.call('HGET', KEYS[2], owner_url) or '0')
  else
    redis.call('HSET', KEYS[1], ARGV[i], url .. '\n' .. ARGV[i + 1])
    table.insert(result, '')
    table.insert(result, '0')
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return result
