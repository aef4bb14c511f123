-- What a delivery finds when it comes for its event's body (store/event-bodies.ts).
-- KEYS: event record, body. ARGV: subscriber. Returns {1, body}; {2} when this subscriber has
-- the event already; {3} when neither the body nor a record of it is left (expired).
if redis.call('EXISTS', KEYS[1]) == 1 then
  local pending = redis.call('HGET', KEYS[1], 'pending')
  if not pending or not string.find(',' .. pending .. ',', ',' .. ARGV[1] .. ',', 1, true) then return {2} end
end
local body = redis.call('GET', KEYS[2])
if body then return {1, body} end
return {3}
