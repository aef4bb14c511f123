-- One attempt's permit under a subscriber's rate limit, shared by every instance (delivery/rate-limit.ts).
-- KEYS: the subscriber's schedule (the earliest time, in ms, the next attempt may start).
-- ARGV: the interval between attempts in ms; the longest wait the caller takes, in ms (-1: any).
-- Returns the wait in ms before the attempt may start, its start reserved; or -1, nothing reserved,
-- when that wait would be longer than the caller takes. Redis's clock, not the instances': theirs differ.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local interval = tonumber(ARGV[1])
local start = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local wait = start - now
local longest = tonumber(ARGV[2])
if longest >= 0 and wait > longest then return -1 end
redis.call('SET', KEYS[1], start + interval, 'PX', wait + interval + 1000)
return wait
