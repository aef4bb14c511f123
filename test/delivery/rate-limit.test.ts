import t from 'tap'
import { Redis } from 'ioredis'
import { RateLimit } from '../../src/delivery/rate-limit.js'
import { withScripts } from '../../src/store/scripts.js'
import { personaEvent, signedHeaders, uniqueEventId } from '../helpers/app.js'
import { startRedis } from '../helpers/redis.js'
import { startRelayProcess, type RelayProcess } from '../helpers/relay-process.js'
import { startSubscriber } from '../helpers/subscriber.js'

t.test('turns are reserved one interval apart on Redis\'s clock, and a turn too far away reserves nothing', async (t) => {
  const redis = await startRedis()
  const client = withScripts(new Redis(redis.url))
  t.teardown(async () => {
    client.disconnect()
    await redis.stop()
  })
  // Ten seconds apart: reserving waits for nothing, and the machine's pauses between calls (tens of
  // milliseconds at worst) are small beside the turns.
  const limit = new RateLimit(client, 'test:rate', 10_000)
  const near = (actual: number | undefined, expected: number) => actual !== undefined && actual <= expected && actual > expected - 500
  const waits = [await limit.reserve(), await limit.reserve(), await limit.reserve()]
  t.ok(near(waits[0], 0), `the first starts at once (${waits[0]} ms)`)
  t.ok(near(waits[1], 10_000), `the second a turn later (${waits[1]} ms)`)
  t.ok(near(waits[2], 20_000), `the third two turns later (${waits[2]} ms)`)
  t.equal(await limit.reserve(25_000), undefined, 'a turn 30 s away is refused to a caller who waits at most 25 s')
  const next = await limit.reserve(35_000)
  t.ok(near(next, 30_000), `and that refusal reserved nothing: the next turn is still the fourth (${next} ms)`)
  const ttl = await client.pttl('test:rate')
  t.ok(ttl > 40_000 && ttl <= 41_000, `the schedule outlives the last reserved turn by a second, then expires (${ttl} ms)`)
})

t.test('a 10/s limit spreads 40 deliveries over about 4 s across two instances, each sent once, on its first attempt', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const env = { SUBSCRIBER_LIMITED_URL: subscriber.url, SUBSCRIBER_LIMITED_EVENTS: '*', SUBSCRIBER_LIMITED_RATE_LIMIT: '10/s' }
  const relays: RelayProcess[] = [await startRelayProcess(t, 'one', redis, env), await startRelayProcess(t, 'two', redis, env)]
  const ids = Array.from({ length: 40 }, () => uniqueEventId())
  await Promise.all(ids.map(async (id, index) => {
    const body = personaEvent(id)
    const response = await fetch(`${relays[index % 2]!.baseUrl}/webhooks/persona`, { method: 'POST', headers: signedHeaders(body), body })
    t.equal(response.status, 200)
  }))
  const received = await subscriber.waitFor(40, 15_000)
  const starts = received.map((request) => request.at).sort((a, b) => a - b)
  const span = starts.at(-1)! - starts[0]!
  // Turns are exact; arrivals jitter with the machine's load, and a late one bunches with the next.
  t.ok(span >= 3400 && span <= 6000, `40 attempts at 10/s take about 3.9 s (took ${span} ms)`)
  // Eleven arrivals span ten turns, a second; without the limit they would all come within milliseconds.
  const tightest = Math.min(...starts.slice(10).map((at, index) => at - starts[index]!))
  t.ok(tightest >= 600, `any 11 arrivals span at least 0.6 s (the tightest ${tightest} ms)`)
  const delivered = received.map((request) => JSON.parse(request.body.toString()).data.id as string)
  t.same(new Set(delivered).size, 40, 'every event arrived')
  t.equal(delivered.length, 40, 'and none twice')
  t.ok(received.every((request) => request.headers['persona-relay-attempt'] === '1'), 'waiting for a turn spent no attempt')
  await new Promise((resolve) => setTimeout(resolve, 300))
  const attemptsBy = relays.map((relay) => relay.logs().filter((line) => line.msg === 'delivery attempt').length)
  t.equal(attemptsBy[0]! + attemptsBy[1]!, 40, `one attempt per event (${attemptsBy.join(' + ')})`)
  t.ok(attemptsBy.every((count) => count > 0), 'both instances delivered, under the one limit')
  const client = new Redis(redis.url)
  t.teardown(() => client.disconnect())
  t.equal(await client.exists('persona-relay:subscriber:LIMITED:failures'), 0, 'no failure was counted')
})
