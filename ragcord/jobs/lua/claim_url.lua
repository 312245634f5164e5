-- Claims a redirect target for the page that redirected to it, while the job runs (an ended job's scratch
-- keys are gone and must not come back without a TTL).
-- KEYS[1] job hash         P:job:{J}
-- KEYS[2] seen hash        P:job:{J}:seen (url -> url of the page that reserved it)
-- ARGV[1] the redirect target's url
-- ARGV[2] the claimant: the url of the page that redirected
-- Returns the page that owns the target: the claimant, or whoever reserved it first; '' when the job ended.
local state = redis.call('HGET', KEYS[1], 'state')
if not state or state == 'SUCCEEDED' or state == 'FAILED' or state == 'CANCELLED' then return '' end
redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])
return redis.call('HGET', KEYS[2], ARGV[1])
