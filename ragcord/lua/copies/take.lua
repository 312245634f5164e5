-- Moves fingerprints from a page that copies this one (a whole-manual edition) to this page.
-- KEYS[1] owners hash   P:job:ID:chunk-owners (fingerprint -> "url\nchunk_index")
-- ARGV[1] the expected current owner's "url\n" prefix
-- ARGV[2] the new owner's url
-- ARGV[3], ARGV[4], ... pairs of (fingerprint, this page's chunk index)
-- Only fingerprints still owned by that page move. Returns, per pair, the copy's chunk index that was
-- taken, or "" when another page owns the fingerprint now.
local taken = {}
for i = 3, #ARGV, 2 do
  local owner = redis.call('HGET', KEYS[1], ARGV[i])
  if owner and string.sub(owner, 1, #ARGV[1]) == ARGV[1] then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[2] .. '\n' .. ARGV[i + 1])
    table.insert(taken, string.sub(owner, #ARGV[1] + 1))
  else
    table.insert(taken, '')
  end
end
return taken
