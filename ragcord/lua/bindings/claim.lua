-- Claims an unclaimed (shared) knowledge base for a Discord server.
-- KEYS[1] servers set      P:kb-servers:KB (guild ids that may use the knowledge base; empty: shared)
-- ARGV[1] the guild id
-- Returns 1 when the guild may use the knowledge base (it claimed it now, or had it), else 0.
if redis.call('SCARD', KEYS[1]) == 0 then
  redis.call('SADD', KEYS[1], ARGV[1])
  return 1
end
return redis.call('SISMEMBER', KEYS[1], ARGV[1])
