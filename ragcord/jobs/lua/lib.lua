-- Shared by every job script that changes the job's state; prepended to each of them when loaded.
-- Defines:
--   job_snapshot(job)      the job hash as a JSON object (every event carries one)
--   emit(job, stream, retention, now, kind, url, detail, chunks)
--                          appends one event with the next sequence number (entry id `<seq>-0`), keeping at
--                          most `retention` entries; returns the sequence number
--   TERMINAL               the set of states a job never leaves
--   ending_keys(keys, first, ttl_ms)
--                          the keys an ending job touches, from the scripts' shared KEYS layout starting at
--                          `first`: the six scratch keys
--   finalize_if_idle(job, stream, retention, now, ending)
--                          ends the job when no page is outstanding: the terminal event, scratch keys deleted,
--                          record and events set to expire together after ending.ttl ms; returns the final
--                          state or false. Every key is the job's own (one cluster slot): the caller updates
--                          the cross-job index and counters (P:jobs:active, :expiring, :counters) after it.
local function job_snapshot(job)
  local flat = redis.call('HGETALL', job)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return cjson.encode(t)
end
local function emit(job, stream, retention, now, kind, url, detail, chunks)
  local seq = redis.call('HINCRBY', job, 'event_seq', 1)
  redis.call('XADD', stream, 'MAXLEN', retention, seq .. '-0',
    'kind', kind, 'url', url, 'detail', detail, 'chunks', chunks, 'at', now, 'job', job_snapshot(job))
  return seq
end
local TERMINAL = {SUCCEEDED = true, FAILED = true, CANCELLED = true}
local function ending_keys(keys, first, ttl_ms)
  return {scratch = {keys[first], keys[first + 1], keys[first + 2], keys[first + 3], keys[first + 4],
      keys[first + 5]},
    ttl = tonumber(ttl_ms)}
end
-- Ends the job when no page is outstanding; returns the final state or false.
local function finalize_if_idle(job, stream, retention, now, ending)
  local state = redis.call('HGET', job, 'state')
  if TERMINAL[state] then return false end
  if tonumber(redis.call('HGET', job, 'outstanding') or '0') > 0 then return false end
  local final, detail
  if redis.call('HGET', job, 'cancel_requested') == '1' then
    final, detail = 'CANCELLED', 'cancelled'
  elseif tonumber(redis.call('HGET', job, 'pages_done') or '0') > 0 then
    final, detail = 'SUCCEEDED', 'succeeded'
  else
    final = 'FAILED'
    local seed_error = redis.call('HGET', job, 'seed_error')
    detail = 'no page could be indexed' .. ((seed_error and (': ' .. seed_error)) or '')
    redis.call('HSET', job, 'error', detail)
  end
  redis.call('HSET', job, 'state', final, 'finished_at', now)
  emit(job, stream, retention, now, 'STATE_CHANGED', '', detail, 0)
  redis.call('DEL', unpack(ending.scratch))
  -- Record and events go together: one TTL, set in this one script.
  redis.call('PEXPIRE', job, ending.ttl)
  redis.call('PEXPIRE', stream, ending.ttl)
  return final
end
