-- An ordered delivery leaves its object's lane: delivered, dead-lettered or skipped (delivery/ordering.ts).
-- KEYS: the lane's state, its waiting set. ARGV: event id, its created-at in ms, '1' when it was
-- delivered (it then becomes the newest delivered, for the stale guard), the lanes' TTL in seconds.
-- Returns the next waiting event's id, or false.
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('HGET', KEYS[1], 'holder') == ARGV[1] then redis.call('HDEL', KEYS[1], 'holder') end
if ARGV[3] == '1' then
  local last = tonumber(redis.call('HGET', KEYS[1], 'last') or '')
  if not last or tonumber(ARGV[2]) > last then redis.call('HSET', KEYS[1], 'last', ARGV[2]) end
  redis.call('EXPIRE', KEYS[1], ARGV[4])
end
return redis.call('ZRANGE', KEYS[2], 0, 0)[1]
