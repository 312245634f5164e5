-- Claims a redirect target for the page that redirected to it.
-- KEYS[1] seen hash        P:job:J:seen (url -> url of the page that reserved it)
-- ARGV[1] the redirect target's url
-- ARGV[2] the claimant: the url of the page that redirected
-- Returns the page that owns the target: the claimant, or whoever reserved it first.
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
return redis.call('HGET', KEYS[1], ARGV[1])
