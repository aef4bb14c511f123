-- Records an event once and queues it for fan-out, atomically (store/event-store.ts).
-- KEYS: event record, intake stream, body. ARGV: id, name, createdAt, receivedAt, subscribers
-- (comma-separated, '' for none), body, source, TTL in seconds. Returns 1, or 0 for a duplicate.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'name', ARGV[2], 'createdAt', ARGV[3], 'receivedAt', ARGV[4], 'subscribers', ARGV[5], 'source', ARGV[7])
redis.call('EXPIRE', KEYS[1], ARGV[8])
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[1], 'pending', ARGV[5])
  redis.call('SET', KEYS[3], ARGV[6], 'EX', ARGV[8])
  redis.call('XADD', KEYS[2], '*', 'id', ARGV[1], 'name', ARGV[2], 'createdAt', ARGV[3], 'receivedAt', ARGV[4],
    'subscribers', ARGV[5], 'source', ARGV[7])
end
return 1
