-- Records an event once and queues it for fan-out, atomically (store/event-store.ts).
-- KEYS: event record, intake stream. ARGV: id, name, createdAt, receivedAt, subscribers
-- (comma-separated, '' for none), body, source, TTL in seconds. Returns 1, or 0 for a duplicate.
-- The body travels in the stream entry: a delivery that needs it later (a retry) keeps it in a key
-- of its own (hold-body-2.lua). `v` 2 marks this layout; records without it are older.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'name', ARGV[2], 'createdAt', ARGV[3], 'receivedAt', ARGV[4], 'subscribers', ARGV[5], 'source', ARGV[7], 'v', '2')
redis.call('EXPIRE', KEYS[1], ARGV[8])
if ARGV[5] ~= '' then
  redis.call('XADD', KEYS[2], '*', 'id', ARGV[1], 'name', ARGV[2], 'createdAt', ARGV[3], 'receivedAt', ARGV[4],
    'subscribers', ARGV[5], 'source', ARGV[7], 'body', ARGV[6])
end
return 1
