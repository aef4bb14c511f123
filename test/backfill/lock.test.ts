import { once } from 'node:events'
import t, { type Test } from 'tap'
import { Redis, type RedisOptions } from 'ioredis'
import { acquireLock, isHeldBy } from '../../src/backfill/lock.js'
import { REQUEST_PATH_OPTIONS } from '../../src/store/redis.js'
import { startRedis } from '../helpers/redis.js'
import { waitUntil } from '../helpers/wait-until.js'

const KEY = 'test:backfill:lock'

async function redisFor(t: Test, options: RedisOptions = {}) {
  const server = await startRedis()
  const redis = new Redis(server.url, options)
  redis.on('error', () => undefined)
  t.teardown(async () => {
    redis.disconnect()
    await server.stop()
  })
  await waitUntil('redis ready', () => redis.status === 'ready')
  return { server, redis }
}

t.test('one holder at a time: a second acquire fails until the first releases', async (t) => {
  const { redis } = await redisFor(t)
  const first = await acquireLock(redis, KEY, 5000, 'bf_first')
  t.ok(first)
  t.equal(await isHeldBy(redis, KEY, 'bf_first'), true)
  t.equal(await isHeldBy(redis, KEY, 'bf_firs'), false, 'the whole holder name, not a prefix of it')
  t.equal(await acquireLock(redis, KEY, 5000, 'test'), undefined, 'held')
  await first!.release()
  t.equal(await redis.exists(KEY), 0, 'released by deleting it')
  t.equal(await isHeldBy(redis, KEY, 'bf_first'), false)
  const second = await acquireLock(redis, KEY, 5000, 'test')
  t.ok(second, 'free again')
  await second!.release()
})

t.test('the holder renews its lock: it outlives its TTL for as long as it is held', async (t) => {
  const { redis } = await redisFor(t)
  const lock = await acquireLock(redis, KEY, 300, 'test')
  await new Promise((resolve) => setTimeout(resolve, 1000))
  t.equal(lock!.signal.aborted, false)
  t.equal(await acquireLock(redis, KEY, 300, 'test'), undefined, 'still held after three TTLs')
  await lock!.release()
})

t.test('a lock taken over by another holder is reported lost, and releasing it leaves the other\'s', async (t) => {
  const { redis } = await redisFor(t)
  const lock = await acquireLock(redis, KEY, 300, 'test')
  // As if it had expired while its holder stalled, and another instance took it.
  await redis.set(KEY, 'someone-else', 'PX', 10_000)
  await once(lock!.signal, 'abort')
  t.match(lock!.signal.reason, { message: 'lock taken over' })
  await lock!.release()
  t.equal(await redis.get(KEY), 'someone-else', 'compare-and-delete left it alone')
})

t.test('a lock that cannot be renewed because Redis is gone is given up once it may have expired', async (t) => {
  const { server, redis } = await redisFor(t, REQUEST_PATH_OPTIONS)
  const lock = await acquireLock(redis, KEY, 600, 'test')
  await server.kill()
  const killedAt = Date.now()
  await once(lock!.signal, 'abort')
  t.match(lock!.signal.reason, { message: 'lock not renewed in time' })
  t.ok(Date.now() - killedAt < 3000, 'soon after its TTL')
  await lock!.release()
})
