import t from 'tap'
import type { LightMyRequestResponse } from 'fastify'
import { Redis } from 'ioredis'
import { buildApp, type App } from '../../src/app.js'
import { loadConfig } from '../../src/config/index.js'
import { captureLogs, personaEvent, signedHeaders, startRelay, testEnv, uniqueEventId } from '../helpers/app.js'
import { startRedis } from '../helpers/redis.js'
import { startSubscriber } from '../helpers/subscriber.js'
import { waitUntil } from '../helpers/wait-until.js'

const PATH = '/webhooks/persona'
const FAST_ANSWER_MS = 2000

async function post(app: App, id: string): Promise<{ response: LightMyRequestResponse; ms: number }> {
  const body = personaEvent(id)
  const started = performance.now()
  const response = await app.inject({ method: 'POST', url: PATH, headers: signedHeaders(body), payload: body })
  return { response, ms: performance.now() - started }
}

/** Sends the event until it is answered 200, as Persona's retries would. */
async function postUntilAccepted(app: App, id: string, timeoutMs = 15_000) {
  return waitUntil(`${id} to be accepted`, async () => {
    const { response } = await post(app, id)
    return response.statusCode === 200 && response
  }, timeoutMs, 100)
}

for (const appendOnly of [true, false]) {
  const kind = appendOnly ? 'a persistent Redis' : 'a Redis that loses its data'
  t.test(`a crash of ${kind} is answered 503 and recovered from without restarting the relay`, async (t) => {
    const subscriber = await startSubscriber()
    t.teardown(() => subscriber.close())
    const redis = await startRedis({ appendOnly })
    t.teardown(() => redis.stop())
    const { app } = await startRelay(t, { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: 'inquiry.*' }, redis)

    const before = uniqueEventId()
    t.equal((await post(app, before)).response.statusCode, 200)
    await subscriber.waitFor(1)
    await redis.kill()

    const refused = uniqueEventId()
    const { response, ms } = await post(app, refused)
    t.equal(response.statusCode, 503)
    t.match(response.json(), { statusCode: 503, code: 'STORE_UNAVAILABLE', message: 'The event could not be recorded; retry later' })
    t.ok(ms < FAST_ANSWER_MS, `answered in ${Math.round(ms)} ms`)

    const burst = await Promise.all(Array.from({ length: 5 }, () => post(app, uniqueEventId())))
    t.same(burst.map(({ response }) => response.statusCode), [503, 503, 503, 503, 503], 'every request meanwhile is 503')
    t.ok(burst.every(({ ms }) => ms < FAST_ANSWER_MS), `all within ${FAST_ANSWER_MS} ms`)

    const readyStarted = performance.now()
    const unready = await app.inject({ method: 'GET', url: '/readyz' })
    t.equal(unready.statusCode, 503)
    t.match(unready.json(), { status: 'unavailable', checks: { redis: 'failing' } })
    t.ok(performance.now() - readyStarted < FAST_ANSWER_MS, '/readyz answers promptly too')
    t.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200, 'the process itself stays healthy')

    await redis.start()
    const after = uniqueEventId()
    t.same((await postUntilAccepted(app, after)).json(), { received: true, id: after })
    const resent = await postUntilAccepted(app, refused)
    t.same(resent.json(), { received: true, id: refused }, 'the event refused during the outage is new, not a duplicate')
    const copy = await post(app, refused)
    t.same(copy.response.json(), { received: true, id: refused, duplicate: true })

    await waitUntil('/readyz to recover', async () => (await app.inject({ method: 'GET', url: '/readyz' })).statusCode === 200)
    await subscriber.waitFor(3, 15_000)
    const delivered = subscriber.received.map((request) => request.headers['webhook-id'])
    t.same([...delivered].sort(), [before, after, refused].sort(), 'each accepted event delivered once, the refused burst never')
  })
}

t.test('a Redis that stops answering is answered 503 within 2 s, and the event is neither lost nor doubled', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const inspector = new Redis(redis.url)
  t.teardown(() => inspector.disconnect())
  const pid = Number(/process_id:(\d+)/.exec(await inspector.info('server'))![1])
  const { app } = await startRelay(t, { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: 'inquiry.*' }, redis)

  const refused = uniqueEventId()
  // A hung Redis keeps its connections open: only the command timeout can answer for it.
  process.kill(pid, 'SIGSTOP')
  try {
    const { response, ms } = await post(app, refused)
    t.equal(response.statusCode, 503)
    t.equal(response.json<{ code: string }>().code, 'STORE_UNAVAILABLE')
    t.ok(ms < FAST_ANSWER_MS, `answered in ${Math.round(ms)} ms`)
    const readyStarted = performance.now()
    t.equal((await app.inject({ method: 'GET', url: '/readyz' })).statusCode, 503)
    t.ok(performance.now() - readyStarted < FAST_ANSWER_MS, '/readyz answers promptly too')
  } finally {
    process.kill(pid, 'SIGCONT')
  }

  // The timed-out script may still run once Redis resumes, so the retry is either new or a duplicate.
  const resent = await postUntilAccepted(app, refused)
  t.match(resent.json(), { received: true, id: refused })
  const sentinel = uniqueEventId()
  await postUntilAccepted(app, sentinel)
  await subscriber.waitFor(2, 15_000)
  const info = (await inspector.xinfo('STREAM', 'persona-relay:intake')) as unknown[]
  t.equal(Number(info[info.indexOf('entries-added') + 1]), 2, 'one intake entry per event')
  t.same(subscriber.received.map((request) => request.headers['webhook-id']).sort(), [refused, sentinel].sort(), 'each delivered once')
})

t.test('a relay whose Redis is down at startup starts unready, answers 503, and recovers', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  await redis.kill()

  const config = loadConfig(testEnv(redis, { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: 'inquiry.*' }))
  const { stream, capture } = captureLogs()
  const started = performance.now()
  const app = await buildApp(config, { logStream: stream })
  await app.ready()
  t.teardown(() => app.close())
  t.ok(performance.now() - started < 10_000, `built in ${Math.round(performance.now() - started)} ms`)
  t.ok(capture.lines.some((line) => line.msg === 'redis is not reachable yet; intake answers 503 until it is'), 'says why it is unready')

  const refused = uniqueEventId()
  const { response, ms } = await post(app, refused)
  t.equal(response.statusCode, 503)
  t.equal(response.json<{ code: string }>().code, 'STORE_UNAVAILABLE')
  t.ok(ms < FAST_ANSWER_MS, `answered in ${Math.round(ms)} ms`)
  t.equal((await app.inject({ method: 'GET', url: '/readyz' })).statusCode, 503)
  t.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200)

  await redis.start()
  t.same((await postUntilAccepted(app, refused)).json(), { received: true, id: refused })
  await waitUntil('/readyz to recover', async () => (await app.inject({ method: 'GET', url: '/readyz' })).statusCode === 200)
  const [delivery] = await subscriber.waitFor(1, 15_000)
  t.equal(delivery!.headers['webhook-id'], refused)
})
