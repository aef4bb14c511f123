-- A delivery that held the body key (a job's, or one of an event older than layout 2) completes
-- (delivery/outcomes.ts): its completion goes on the record, and it lets go of the body, which
-- goes with the last holder. KEYS: event record, body. ARGV: subscriber, completion (JSON), TTL
-- in seconds for a record already gone (a replayed dead letter can outlive it).
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'd:' .. ARGV[1], ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return 0
end
redis.call('HSET', KEYS[1], 'd:' .. ARGV[1], ARGV[2])
local pending = redis.call('HGET', KEYS[1], 'pending')
if not pending then return 1 end
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
