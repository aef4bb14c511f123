-- Removes the body of an event whose Persona object was redacted, keeping its metadata
-- (delivery/redaction.ts). KEYS: event record, body. Returns 1 when a body was removed.
-- `redacted` on the record tells every later attempt (lookup-body-2.lua) and the admin API why
-- the body is gone; a record that has expired is not recreated.
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'redacted', '1') end
return redis.call('DEL', KEYS[2])
