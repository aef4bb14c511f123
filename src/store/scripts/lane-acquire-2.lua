-- An ordered delivery's turn in its object's lane (delivery/ordering.ts).
-- KEYS: the lane's state (hash: `holder`, `last`), its waiting set (event ids by created-at in ms).
-- ARGV: event id, its created-at in ms, the lanes' TTL in seconds, and a blocker to drop ('' for none):
-- an event the caller found has no delivery left to make, so it must not hold the lane.
-- Returns {1, stale} when the delivery may go (stale 1 when an event created later was delivered
-- already), or {0, blocker} when the holder, or an earlier waiting event, goes first.
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
if ARGV[4] ~= '' then
  redis.call('ZREM', KEYS[2], ARGV[4])
  if redis.call('HGET', KEYS[1], 'holder') == ARGV[4] then redis.call('HDEL', KEYS[1], 'holder') end
end
local holder = redis.call('HGET', KEYS[1], 'holder')
if holder and holder ~= ARGV[1] then return {0, holder} end
local first = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
if first ~= ARGV[1] then return {0, first} end
redis.call('HSET', KEYS[1], 'holder', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
local last = tonumber(redis.call('HGET', KEYS[1], 'last') or '')
if last and tonumber(ARGV[2]) < last then return {1, 1} end
return {1, 0}
