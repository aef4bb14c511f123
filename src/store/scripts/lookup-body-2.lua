-- What a queued delivery finds when it comes for its event's body (store/event-bodies.ts).
-- KEYS: event record, body. ARGV: subscriber. Returns {1, body}; {2} when this subscriber has
-- the event already; {3} when neither the body nor a record of it is left (expired); {4} when
-- the body was removed because Persona redacted the event's object (redact-body-2.lua).
-- A subscriber has it once its completion (`d:<subscriber>`) is on the record; on a record older
-- than layout 2, once it is no longer listed in `pending`.
local record = redis.call('HMGET', KEYS[1], 'name', 'v', 'pending', 'd:' .. ARGV[1], 'redacted')
if record[4] then return {2} end
if record[5] then return {4} end
if record[1] and record[2] ~= '2' then
  local pending = record[3]
  if not pending or not string.find(',' .. pending .. ',', ',' .. ARGV[1] .. ',', 1, true) then return {2} end
end
local body = redis.call('GET', KEYS[2])
if body then return {1, body} end
return {3}
