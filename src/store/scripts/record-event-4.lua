-- Records an event once and queues it for fan-out, atomically (store/event-store.ts).
-- KEYS: event record, intake stream, the index of the event's Persona object, the index of events by
-- the time they were received (the console's search; trimmed here to the records' TTL).
-- ARGV: id, name, createdAt, receivedAt, subscribers (comma-separated, '' for none), body, source,
-- TTL in seconds, filtered subscribers (comma-separated), object type, object id ('' for none),
-- the object index's score (created-at in ms), '1' when the event redacts its object, the intake
-- span's traceparent ('' without tracing), the time received in ms, '1' when the caller waits for
-- replicas (REDIS_WAIT_REPLICAS). Returns 1, or 0 for a duplicate, which then counts itself in
-- `seen` when the caller waits: a write for the WAIT that follows to confirm, with the record before it.
-- A redaction is queued even when no subscriber wants it: fan-out carries it out.
-- The body travels in the stream entry: a delivery that needs it later (a retry) keeps it in a key
-- of its own (hold-body-2.lua). `v` 2 marks this layout; records without it are older.
if redis.call('EXISTS', KEYS[1]) == 1 then
  if ARGV[16] == '1' then redis.call('HINCRBY', KEYS[1], 'seen', 1) end
  return 0
end
-- Appends a field and its value to a command's arguments, unless the value is empty.
local function optional(arguments, field, value)
  if value ~= '' then
    table.insert(arguments, field)
    table.insert(arguments, value)
  end
end
local fields = {'name', ARGV[2], 'createdAt', ARGV[3], 'receivedAt', ARGV[4], 'subscribers', ARGV[5], 'source', ARGV[7], 'v', '2'}
optional(fields, 'filtered', ARGV[9])
if ARGV[11] ~= '' then
  optional(fields, 'objectType', ARGV[10])
  optional(fields, 'objectId', ARGV[11])
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('EXPIRE', KEYS[1], ARGV[8])
redis.call('ZADD', KEYS[4], ARGV[15], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. (tonumber(ARGV[15]) - tonumber(ARGV[8]) * 1000))
if ARGV[11] ~= '' then
  -- The index lives as long as its newest event's record; older members outlive theirs, and readers skip them.
  redis.call('ZADD', KEYS[3], ARGV[12], ARGV[1])
  redis.call('EXPIRE', KEYS[3], ARGV[8])
end
if ARGV[5] ~= '' or ARGV[13] == '1' then
  local entry = {'id', ARGV[1], 'name', ARGV[2], 'createdAt', ARGV[3], 'receivedAt', ARGV[4], 'subscribers', ARGV[5], 'source', ARGV[7], 'body', ARGV[6]}
  optional(entry, 'objectId', ARGV[11])
  if ARGV[13] == '1' then optional(entry, 'redacts', ARGV[11]) end
  optional(entry, 'traceparent', ARGV[14])
  redis.call('XADD', KEYS[2], '*', unpack(entry))
end
return 1
