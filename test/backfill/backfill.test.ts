import t from 'tap'
import { Redis } from 'ioredis'
import { personaEvent, startRelay, uniqueEventId } from '../helpers/app.js'
import { ADMIN_TOKEN, admin, eventView } from '../helpers/admin.js'
import { backfillEnv, finishedBackfill, metricSample, postBackfill, redisSnapshot } from '../helpers/backfill.js'
import { postEvent, waitForDelivery } from '../helpers/delivery.js'
import { API_KEY, apiEvent, startPersonaApi } from '../helpers/persona-api.js'
import { startSubscriber } from '../helpers/subscriber.js'
import { waitUntil } from '../helpers/wait-until.js'

const minutesAgo = (minutes: number) => new Date(Date.now() - minutes * 60_000)

/**
 * Persona's list as an outage leaves it: two events whose webhooks arrived, then a gap of events
 * whose webhooks never did (more than a page of them, one not routed to the subscriber), one event
 * older than the backfill's start and one item that is not an event.
 */
function outage() {
  const received = [uniqueEventId(), uniqueEventId()]
  const gap = Array.from({ length: 105 }, () => uniqueEventId())
  const items: Record<string, unknown>[] = [
    apiEvent(received[0]!, minutesAgo(1)),
    ...gap.map((id, index) => apiEvent(id, minutesAgo(2 + index * 0.1), index === 50 ? 'account.created' : 'inquiry.approved')),
    { type: 'event', id: 'not an event id', attributes: { name: 'inquiry.approved', 'created-at': minutesAgo(20).toISOString() } },
    apiEvent(received[1]!, minutesAgo(25)),
    apiEvent(uniqueEventId(), minutesAgo(120))
  ]
  return { received, gap, items, unrouted: gap[50]! }
}

t.test('a gap of events never received is queued and delivered; events received by webhook are not forwarded again', async (t) => {
  const { received, gap, items, unrouted } = outage()
  const api = await startPersonaApi({
    items,
    answer: (n) => (n === 1 ? { status: 429, headers: { 'retry-after': '1' } } : n === 3 ? { status: 500 } : undefined)
  })
  const subscriber = await startSubscriber()
  t.teardown(async () => {
    await api.close()
    await subscriber.close()
  })
  const { app, logs } = await startRelay(t, {
    ADMIN_TOKEN,
    ...backfillEnv(api.baseUrl, API_KEY),
    SUBSCRIBER_CRM_URL: subscriber.url,
    SUBSCRIBER_CRM_EVENTS: 'inquiry.*'
  })
  const webhookBodies = received.map((id) => personaEvent(id))
  for (const body of webhookBodies) await postEvent(app, body)
  await subscriber.waitFor(2)

  const started = await postBackfill(app, { since: '1h' })
  t.equal(started.statusCode, 202)
  t.equal(started.location, `/admin/backfill/${started.body.id}`)
  t.match(started.body, { id: /^bf_/, status: 'running', trigger: 'admin', dryRun: false, queued: 0 })
  const job = await finishedBackfill(app, started.body.id)
  t.match(job, { status: 'succeeded', pages: 2, seen: 109, queued: 105, skipped: 2, invalid: 1, wouldQueue: 0, finishedAt: String })
  t.notOk('wouldQueueEvents' in job, 'only a dry run lists events')
  t.notOk('error' in job)
  t.equal(job.newestCreatedAt, (items[0]!.attributes as Record<string, string>)['created-at'], 'the newest event in the range, recorded or not')

  const routed = gap.filter((id) => id !== unrouted)
  await subscriber.waitFor(2 + routed.length)
  for (const id of routed) await waitForDelivery(app, 'CRM', id, 'completed')
  const byId = new Map(subscriber.received.map((request) => [request.headers['webhook-id'], request]))
  t.equal(subscriber.received.length, 2 + routed.length, 'each event exactly once')
  t.equal(byId.size, subscriber.received.length)
  for (const [index, id] of received.entries()) {
    t.equal(byId.get(id)!.headers['persona-relay-source'], 'webhook')
    t.equal(byId.get(id)!.body.toString(), webhookBodies[index], 'the webhook\'s own bytes, not the API\'s copy')
  }
  for (const id of routed) {
    const request = byId.get(id)!
    t.equal(request.headers['persona-relay-source'], 'backfill')
    t.equal(request.body.toString(), JSON.stringify({ data: items.find((item) => item.id === id) }), 'the API item as {"data": item}')
  }
  t.notOk(byId.has(unrouted), 'routed like a webhook: account.created does not match inquiry.*')

  t.match(await eventView(app, routed[0]!), { source: 'backfill', name: 'inquiry.approved', deliveries: [{ subscriber: 'CRM', state: 'completed' }] })
  t.match(await eventView(app, unrouted), { source: 'backfill', deliveries: [] })
  t.match(await eventView(app, received[0]!), { source: 'webhook' })

  t.same(api.requests.map((request) => request.url.searchParams.get('page[after]')), [null, null, gap[98]!, gap[98]!], '429, page 1, 500, page 2')
  t.ok(api.requests[1]!.at - api.requests[0]!.at >= 950, 'Retry-After honoured')

  for (const [outcome, count] of [['queued', 105], ['skipped', 2], ['invalid', 1]] as const) {
    t.equal(await metricSample(app, `persona_relay_backfill_events_total{outcome="${outcome}"}`), count, outcome)
  }
  t.equal(await metricSample(app, 'persona_relay_backfill_runs_total{result="succeeded"}'), 1)
  const eventLines = logs.lines.filter((line) => line.msg === 'backfill event')
  t.equal(eventLines.length, 105)
  t.match(eventLines[0], { source: 'backfill', outcome: 'queued', eventId: gap[0], eventName: 'inquiry.approved' })
  t.notOk(logs.text().includes(API_KEY), 'the API key is never logged')
  t.notOk(logs.text().includes('Zoë'), 'bodies are never logged')
})

t.test('a dry run counts what it would queue and changes nothing in Redis but its own record', async (t) => {
  const { received, gap, items } = outage()
  const api = await startPersonaApi({ items })
  t.teardown(() => api.close())
  // No subscriber: deliveries would change Redis on their own while the snapshots are compared.
  const { app, redis } = await startRelay(t, { ADMIN_TOKEN, ...backfillEnv(api.baseUrl, API_KEY) })
  await postEvent(app, personaEvent(received[0]!))
  const ownRecord = /:backfill:job:/
  const before = await redisSnapshot(redis.url, ownRecord)
  t.ok([...before.keys()].some((key) => key.endsWith(`:event:${received[0]}`)), 'the snapshot holds the webhook\'s record')

  const started = await postBackfill(app, { since: '1h', until: '1m', dryRun: true })
  t.equal(started.statusCode, 202)
  const job = await finishedBackfill(app, started.body.id)
  t.match(job, { status: 'succeeded', dryRun: true, queued: 0, wouldQueue: gap.length + 1, skipped: 1, invalid: 1 }, 'the gap and the other missed webhook')
  t.equal(job.wouldQueueEvents?.length, 100, 'the first hundred of them listed')
  t.same(job.wouldQueueEvents?.slice(0, 2), gap.slice(0, 2).map((id, index) => ({ id, name: 'inquiry.approved', createdAt: (items[index + 1]!.attributes as { 'created-at': string })['created-at'], subscribers: [] })),
    'newest first, with the subscribers each would go to: metadata only')
  t.same(await redisSnapshot(redis.url, ownRecord), before, 'no event record, stream entry or lock left behind')
  t.equal(await metricSample(app, 'persona_relay_backfill_events_total{outcome="would_queue"}'), gap.length + 1)
  t.equal(await metricSample(app, 'persona_relay_backfill_events_total{outcome="queued"}'), 0)
})

t.test('an invalid API key fails the backfill with a clear error in its record', async (t) => {
  const api = await startPersonaApi({ items: [apiEvent(uniqueEventId(), minutesAgo(5))] })
  t.teardown(() => api.close())
  const { app, logs } = await startRelay(t, { ADMIN_TOKEN, ...backfillEnv(api.baseUrl, 'persona_revoked_key_0000') })
  const started = await postBackfill(app, { since: '2h' })
  const job = await finishedBackfill(app, started.body.id)
  t.match(job, {
    status: 'failed',
    pages: 0,
    queued: 0,
    error: { code: 'PERSONA_API_UNAUTHORIZED', message: /Persona refused PERSONA_API_KEY \(HTTP 401\)/ }
  })
  t.equal(api.requests.length, 1, 'not retried')
  t.equal(await metricSample(app, 'persona_relay_backfill_runs_total{result="failed"}'), 1)
  t.match(logs.lines.find((line) => line.msg === 'backfill failed'), { errorCode: 'PERSONA_API_UNAUTHORIZED', source: 'backfill' })
  t.notOk(logs.text().includes('persona_revoked_key_0000'))
})

t.test('the admin API refuses bad ranges, a second run, unknown ids and an unconfigured relay', async (t) => {
  const api = await startPersonaApi({ answer: () => ({ status: 200, body: '{"data":[]}', delayMs: 1500 }) })
  t.teardown(() => api.close())
  const { app } = await startRelay(t, { ADMIN_TOKEN, ...backfillEnv(api.baseUrl, API_KEY), DEDUPE_TTL_SECONDS: '86400' })
  const refusals: [unknown, number, string, RegExp][] = [
    [{ since: 'last week' }, 400, 'INVALID_BACKFILL_RANGE', /since must be an ISO 8601 time/],
    [{ since: '2h', until: '3h' }, 400, 'INVALID_BACKFILL_RANGE', /since must be earlier than until/],
    [{ since: '2d' }, 400, 'INVALID_BACKFILL_RANGE', /within the last 1d/],
    [{ since: '2026-11-27T08:00:00' }, 400, 'INVALID_BACKFILL_RANGE', /with its zone/],
    [{}, 400, 'INVALID_REQUEST', /since/],
    [{ since: '2h', dryRun: 'yes' }, 400, 'INVALID_REQUEST', /dryRun/],
    [{ since: '2h', subscriber: 'CRM' }, 400, 'INVALID_REQUEST', /./]
  ]
  for (const [body, statusCode, code, message] of refusals) {
    const answer = await postBackfill(app, body)
    t.match(answer, { statusCode, body: { code, message } }, JSON.stringify(body))
    t.notOk(JSON.stringify(answer.body).includes('last week'), 'the input is not echoed')
  }
  t.equal(api.requests.length, 0, 'nothing started')

  const first = await postBackfill(app, { since: '1h' })
  t.equal(first.statusCode, 202)
  t.match(await postBackfill(app, { since: '1h' }), { statusCode: 409, body: { code: 'BACKFILL_RUNNING' } })
  t.match(await admin(app, 'GET', `/admin/backfill/${first.body.id}`), { statusCode: 200, body: { status: 'running' } }, 'progress while it runs')
  t.match(await finishedBackfill(app, first.body.id), { status: 'succeeded', pages: 1, seen: 0 })
  t.equal((await postBackfill(app, { since: '1h' })).statusCode, 202, 'free again once it ended')

  for (const id of ['bf_00000000-0000-0000-0000-000000000000', 'whatever']) {
    t.match(await admin(app, 'GET', `/admin/backfill/${id}`), { statusCode: 404, body: { code: 'BACKFILL_NOT_FOUND' } })
  }
  const unauthenticated = await app.inject({ method: 'POST', url: '/admin/backfill', payload: { since: '1h' } })
  t.match(unauthenticated.json(), { statusCode: 401, code: 'ADMIN_UNAUTHORIZED' })

  const { app: unconfigured } = await startRelay(t, { ADMIN_TOKEN })
  t.match(await postBackfill(unconfigured, { since: '1h' }), { statusCode: 404, body: { code: 'BACKFILL_NOT_CONFIGURED', message: /PERSONA_API_KEY/ } })
  t.match(await admin(unconfigured, 'GET', `/admin/backfill/${first.body.id}`), { statusCode: 404, body: { code: 'BACKFILL_NOT_CONFIGURED' } })
})

t.test('two instances on one Redis: the lock lets only one backfill run at a time', async (t) => {
  const api = await startPersonaApi({ answer: () => ({ status: 200, body: '{"data":[]}', delayMs: 500 }) })
  t.teardown(() => api.close())
  const env = { ADMIN_TOKEN, ...backfillEnv(api.baseUrl, API_KEY) }
  const one = await startRelay(t, env)
  const two = await startRelay(t, env, one.redis)
  const answers = await Promise.all([postBackfill(one.app, { since: '1h' }), postBackfill(two.app, { since: '1h' })])
  t.same(answers.map((answer) => answer.statusCode).sort(), [202, 409])
  const winner = answers.find((answer) => answer.statusCode === 202)!
  t.match(await finishedBackfill(two.app, winner.body.id), { status: 'succeeded' }, 'either instance answers for it')
  t.equal(api.requests.length, 1, 'one walk')
})

t.test('closing the app interrupts a running backfill, and its record says so', async (t) => {
  const api = await startPersonaApi({ answer: () => ({ status: 429, headers: { 'retry-after': '60' } }) })
  t.teardown(() => api.close())
  const { app, redis } = await startRelay(t, { ADMIN_TOKEN, ...backfillEnv(api.baseUrl, API_KEY) })
  const started = await postBackfill(app, { since: '1h' })
  const second = await startRelay(t, { ADMIN_TOKEN, ...backfillEnv(api.baseUrl, API_KEY) }, redis)
  await app.close()
  t.match(await finishedBackfill(second.app, started.body.id), { status: 'failed', error: { code: 'BACKFILL_INTERRUPTED' } })
  t.equal((await postBackfill(second.app, { since: '1h' })).statusCode, 202, 'the lock was released')
})

t.test('a backfill whose instance died is reported interrupted as soon as its lock is gone', async (t) => {
  const api = await startPersonaApi({ answer: () => ({ status: 200, body: '{"data":[]}', delayMs: 5000 }) })
  t.teardown(() => api.close())
  const { app, redis } = await startRelay(t, { ADMIN_TOKEN, ...backfillEnv(api.baseUrl, API_KEY) })
  const started = await postBackfill(app, { since: '1h' })
  t.match(await admin(app, 'GET', `/admin/backfill/${started.body.id}`), { body: { status: 'running' } })
  const client = new Redis(redis.url)
  t.teardown(() => client.disconnect())
  // As after a crash once the lock expired; the run here notices only at its next renewal, seconds later.
  await client.del('persona-relay:backfill:lock')
  t.match(await admin(app, 'GET', `/admin/backfill/${started.body.id}`), {
    statusCode: 200,
    body: { id: started.body.id, status: 'failed', error: { code: 'BACKFILL_INTERRUPTED' } }
  })
})

t.test('Redis lost during a backfill: the run ends STORE_UNAVAILABLE and says so in the log', async (t) => {
  const api = await startPersonaApi({ items: [apiEvent(uniqueEventId(), minutesAgo(5))], delayMs: 300 })
  t.teardown(() => api.close())
  const { app, redis, logs } = await startRelay(t, { ADMIN_TOKEN, ...backfillEnv(api.baseUrl, API_KEY) })
  const started = await postBackfill(app, { since: '1h' })
  t.equal(started.statusCode, 202)
  await waitUntil('the page to be asked for', () => api.requests.length === 1)
  await redis.kill()
  const failed = await waitUntil('the failure', () => logs.lines.find((line) => line.msg === 'backfill failed'))
  t.match(failed, { backfillId: started.body.id, errorCode: 'STORE_UNAVAILABLE', queued: 0 })
  t.ok(logs.lines.some((line) => line.msg === 'event store unavailable' && line.source === 'backfill'))
  await waitUntil('the record failure', () => logs.lines.some((line) => line.msg === 'backfill record could not be saved' && line.backfillId === started.body.id))
  t.match(await postBackfill(app, { since: '1h' }), { statusCode: 503, body: { code: 'STORE_UNAVAILABLE' } }, 'no lock without Redis')
  t.match(await admin(app, 'GET', `/admin/backfill/${started.body.id}`), { statusCode: 503, body: { code: 'STORE_UNAVAILABLE' } })
  await redis.start()
  await waitUntil('a backfill to start again once Redis is back', async () => (await postBackfill(app, { since: '1h' })).statusCode === 202)
})
