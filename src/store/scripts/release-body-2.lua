-- A subscriber no longer holds its event's body: delivered, or never to be sent it
-- (store/event-bodies.ts). The body goes with the last routed subscriber.
-- KEYS: event record, body. ARGV: subscriber. Idempotent: a second release removes nothing.
-- Without the record (a dead letter kept past DEDUPE_TTL_SECONDS) other dead letters may still
-- need the body, which then lives out its own expiry.
local pending = redis.call('HGET', KEYS[1], 'pending')
if not pending then return 0 end
local rest = {}
for name in string.gmatch(pending, '[^,]+') do
  if name ~= ARGV[1] then rest[#rest + 1] = name end
end
if #rest == 0 then
  redis.call('HDEL', KEYS[1], 'pending')
  redis.call('DEL', KEYS[2])
else
  redis.call('HSET', KEYS[1], 'pending', table.concat(rest, ','))
end
return 1
