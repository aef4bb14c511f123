-- A delivery goes to its subscriber's queue, which will need the body (store/event-bodies.ts):
-- the body is kept in its own key, and the subscriber joins `pending`, the deliveries holding it.
-- KEYS: event record, body. ARGV: subscriber, body ('' for an event older than layout 2, whose
-- body key exists already), TTL in seconds for a record already gone. Idempotent. The body lives
-- no longer than its record, which bounds every delivery's wait.
if ARGV[2] ~= '' then
  local ttl = redis.call('TTL', KEYS[1])
  if ttl < 0 then ttl = tonumber(ARGV[3]) end
  redis.call('SET', KEYS[2], ARGV[2], 'EX', ttl, 'NX')
end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local pending = redis.call('HGET', KEYS[1], 'pending')
if not pending or pending == '' then
  pending = ARGV[1]
elseif string.find(',' .. pending .. ',', ',' .. ARGV[1] .. ',', 1, true) then
  return 0
else
  pending = pending .. ',' .. ARGV[1]
end
redis.call('HSET', KEYS[1], 'pending', pending)
return 1
