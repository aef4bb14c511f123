import t, { type Test } from 'tap'
import { Redis } from 'ioredis'
import type { App } from '../../src/app.js'
import { Fanout, FANOUT_GROUP } from '../../src/delivery/fanout.js'
import { FirstAttempts } from '../../src/delivery/first-attempt.js'
import { Outcomes } from '../../src/delivery/outcomes.js'
import { Ordering } from '../../src/delivery/ordering.js'
import { Redaction } from '../../src/delivery/redaction.js'
import { EventBodies } from '../../src/store/event-bodies.js'
import { withScripts } from '../../src/store/scripts.js'
import { EventStore } from '../../src/store/event-store.js'
import { storeKeys } from '../../src/store/keys.js'
import { personaEvent, startRelay, uniqueEventId } from '../helpers/app.js'
import { deliveryView, waitForDelivery } from '../helpers/delivery.js'
import { startRedis, type TestRedis, singleNode } from '../helpers/redis.js'
import { startSubscriber } from '../helpers/subscriber.js'
import { waitUntil } from '../helpers/wait-until.js'

const INTAKE = storeKeys(singleNode('persona-relay')).intake(0)

/** A throwaway Redis and a client on it, both gone when the test ends (after the relay: teardowns run last-in first-out). */
async function redisFor(t: Test): Promise<{ redis: TestRedis; client: Redis }> {
  const redis = await startRedis()
  const client = new Redis(redis.url)
  t.teardown(async () => {
    client.disconnect()
    await redis.stop()
  })
  return { redis, client }
}

const KEYS = storeKeys(singleNode('persona-relay'))

/** The fields the intake script writes, for entries written straight into the stream, after what it writes beside them. */
async function entryFields(client: Redis, id: string, subscribers: string, name = 'inquiry.approved'): Promise<string[]> {
  await client.multi()
    .hset(KEYS.event(id), { name, subscribers, pending: subscribers, source: 'webhook' })
    .set(KEYS.body(id), personaEvent(id, name))
    .exec()
  return [
    'id', id, 'name', name, 'createdAt', '2026-11-27T10:00:00.000Z', 'receivedAt', new Date().toISOString(),
    'subscribers', subscribers, 'source', 'webhook'
  ]
}

async function pendingCount(client: Redis): Promise<number> {
  const [count] = (await client.xpending(INTAKE, FANOUT_GROUP)) as [number]
  return count
}

async function drained(client: Redis): Promise<void> {
  await waitUntil('the intake stream to be fanned out and acknowledged', async () =>
    (await client.xlen(INTAKE)) === 0 && (await pendingCount(client)) === 0)
}

/** Proving that nothing more happens takes a wait; a fresh job would be picked up well within it. */
const quietPeriod = () => new Promise((resolve) => setTimeout(resolve, 400))

/**
 * Writes an entry and has a consumer that is gone ("crashed") read it, then starts a second fan-out
 * that takes abandoned entries over within a few hundred milliseconds. One transaction, so that the
 * running relay's blocked read cannot get the entry first. The second fan-out makes no first
 * attempts (it has no slots): what it takes over goes to the subscribers' queues.
 */
async function abandonThenTakeOver(t: Test, redis: TestRedis, client: Redis, app: App, fields: string[], jobOptions: object): Promise<Fanout> {
  await client.multi()
    .xadd(INTAKE, '*', ...fields)
    .xreadgroup('GROUP', FANOUT_GROUP, 'crashed', 'COUNT', 10, 'STREAMS', INTAKE, '>')
    .exec()
  t.match(await client.xpending(INTAKE, FANOUT_GROUP, '-', '+', 10), [[String, 'crashed']])
  const connection = new Redis(redis.url, { maxRetriesPerRequest: null })
  const records = withScripts(new Redis(redis.url, { maxRetriesPerRequest: null }))
  const bodies = new EventBodies(records, singleNode('persona-relay'), 3600)
  const { queues, controls, completions } = app.delivery
  const outcomes = new Outcomes({
    redis: records, bodies, completions, queues, controls, jobOptions: () => jobOptions, deadLetterRetentionSeconds: 86_400, keys: KEYS, metrics: app.metrics,
    replicaWait: { replicas: 0, timeoutMs: 0 }
  })
  const other = new Fanout({
    connection,
    streamKey: INTAKE,
    subscribers: new Set(queues.keys()),
    bodies,
    outcomes,
    firstAttempts: new FirstAttempts({
      subscribers: [], queues, slots: new Map(), rateLimits: new Map(), connection: records, keys: KEYS, outcomes, context: { log: app.log, metrics: app.metrics }
    }),
    redaction: new Redaction({ redis: records, keys: KEYS, bodies, queues, log: app.log }),
    orderingWindows: new Map(),
    ordering: new Ordering(records, KEYS, 3600),
    acknowledgeConnection: records,
    log: app.log,
    abandonedAfterMs: 300,
    claimEveryMs: 100
  })
  other.start()
  t.teardown(async () => {
    await other.stop()
    records.disconnect()
  })
  return other
}

t.test('an event recorded while no relay runs is delivered once one starts', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const { redis, client } = await redisFor(t)
  const id = uniqueEventId()
  const body = personaEvent(id)
  const store = new EventStore(client, singleNode('persona-relay'), 3600)
  t.equal(await store.record({ id, name: 'inquiry.approved', createdAt: '', body, subscribers: ['CRM'], source: 'webhook' }), 'recorded')
  t.equal(await client.xlen(INTAKE), 1)

  const { app } = await startRelay(t, { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' }, redis)
  const [request] = await subscriber.waitFor(1)
  t.equal(request!.body.toString(), body)
  t.equal(request!.headers['webhook-id'], id)
  await drained(client)
  await waitForDelivery(app, 'CRM', id, 'completed')
})

t.test('an entry written straight into the stream before start-up is delivered', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const { redis, client } = await redisFor(t)
  const id = uniqueEventId()
  await client.xadd(INTAKE, '*', ...await entryFields(client, id, 'CRM'))

  await startRelay(t, { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' }, redis)
  const [request] = await subscriber.waitFor(1)
  t.equal(request!.headers['webhook-id'], id)
  t.equal(request!.headers['persona-relay-source'], 'webhook')
  await drained(client)
})

t.test('an entry a crashed consumer read but never acknowledged is taken over at start-up', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const { redis, client } = await redisFor(t)
  const abandoned = uniqueEventId()
  const inProgress = uniqueEventId()
  await client.xgroup('CREATE', INTAKE, FANOUT_GROUP, '0', 'MKSTREAM')
  const abandonedEntry = await client.xadd(INTAKE, '*', ...await entryFields(client, abandoned, 'CRM'))
  await client.xreadgroup('GROUP', FANOUT_GROUP, 'crashed', 'COUNT', 10, 'STREAMS', INTAKE, '>')
  // The crash happened a minute ago: well past the time after which an entry counts as abandoned.
  await client.xclaim(INTAKE, FANOUT_GROUP, 'crashed', 0, abandonedEntry!, 'IDLE', 60_000)
  // Another instance has just read this one and may still be working on it.
  await client.xadd(INTAKE, '*', ...await entryFields(client, inProgress, 'CRM'))
  await client.xreadgroup('GROUP', FANOUT_GROUP, 'busy', 'COUNT', 10, 'STREAMS', INTAKE, '>')
  t.equal(await pendingCount(client), 2)

  const { app } = await startRelay(t, { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' }, redis)
  const [request] = await subscriber.waitFor(1)
  t.equal(request!.headers['webhook-id'], abandoned)
  await waitUntil('the abandoned entry to be acknowledged', async () => (await pendingCount(client)) === 1)
  await quietPeriod()
  t.equal(subscriber.received.length, 1, 'an entry another consumer holds only briefly is left to it')
  t.match(await client.xpending(INTAKE, FANOUT_GROUP, '-', '+', 10), [[String, 'busy']])
  t.equal(await deliveryView(app, 'CRM', inProgress), undefined)
})

t.test('a running fan-out takes over an entry another instance abandoned', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const { redis, client } = await redisFor(t)
  const { app } = await startRelay(t, { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' }, redis)
  await waitUntil('the relay to create the consumer group', async () => {
    const groups = (await client.xinfo('GROUPS', INTAKE).catch(() => [])) as unknown[][]
    return groups.some((group) => group[1] === FANOUT_GROUP)
  })
  const id = uniqueEventId()
  const fields = await entryFields(client, id, 'CRM')
  const other = await abandonThenTakeOver(t, redis, client, app, fields, { attempts: 2, backoff: { type: 'schedule' } })
  t.ok(other.isRunning())

  const [request] = await subscriber.waitFor(1)
  t.equal(request!.headers['webhook-id'], id)
  await drained(client)
})

/** A relay with CRM, which takes every event, and OPS, which refuses every one and has a single attempt. */
async function crmAndOps(t: Test) {
  const crm = await startSubscriber()
  const ops = await startSubscriber(() => ({ status: 500 }))
  t.teardown(() => Promise.all([crm.close(), ops.close()]))
  const { redis, client } = await redisFor(t)
  const { app } = await startRelay(t, {
    SUBSCRIBER_CRM_URL: crm.url,
    SUBSCRIBER_CRM_EVENTS: '*',
    SUBSCRIBER_OPS_URL: ops.url,
    SUBSCRIBER_OPS_EVENTS: '*',
    SUBSCRIBER_OPS_MAX_ATTEMPTS: '1'
  }, redis)
  return { crm, ops, redis, client, app }
}

t.test('an entry taken over after its first attempts ended delivers nothing twice', async (t) => {
  const { crm, ops, redis, client, app } = await crmAndOps(t)
  const id = uniqueEventId()
  const fields = await entryFields(client, id, 'CRM,OPS')
  await client.xadd(INTAKE, '*', ...fields)
  // CRM's delivery completed by its first attempt, without a job; OPS's failed one became a job.
  await waitForDelivery(app, 'CRM', id, 'completed')
  await waitForDelivery(app, 'OPS', id, 'failed')
  await drained(client)

  // What a fan-out that crashed after its first attempts but before acknowledging leaves.
  await abandonThenTakeOver(t, redis, client, app, fields, { attempts: 1 })
  await drained(client)
  await quietPeriod()
  t.equal(crm.received.length, 1, 'a delivered event is not delivered again')
  t.equal(ops.received.length, 1, 'a failed delivery is not restarted by the take-over')
  t.match(await deliveryView(app, 'CRM', id), { state: 'completed', attempts: [{ attempt: 1, outcome: 'success' }] })
  t.equal(await app.delivery.queues.get('CRM')!.getJob(id), undefined, 'no job for a subscriber that has the event, which would hide its record')
  t.match(await deliveryView(app, 'OPS', id), { state: 'failed', attemptsMade: 1 })
})

t.test('an entry naming a subscriber that is no longer configured skips it with a warning and is acknowledged', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const { redis, client } = await redisFor(t)
  const { logs } = await startRelay(t, { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' }, redis)
  const mixed = uniqueEventId()
  const orphan = uniqueEventId()
  await client.xadd(INTAKE, '*', ...await entryFields(client, orphan, 'GONE'))
  await client.xadd(INTAKE, '*', ...await entryFields(client, mixed, 'GONE,CRM'))

  const [request] = await subscriber.waitFor(1)
  t.equal(request!.headers['webhook-id'], mixed)
  await drained(client)
  const warnings = logs.lines.filter((line) => line.msg === 'event routed to a subscriber that is no longer configured; skipped')
  t.match(warnings, [
    { level: 40, subscriber: 'GONE', eventId: orphan },
    { level: 40, subscriber: 'GONE', eventId: mixed }
  ])
  t.equal(warnings.length, 2)
  await quietPeriod()
  t.equal(subscriber.received.length, 1)
  t.equal(await client.exists(KEYS.body(orphan), KEYS.body(mixed)), 0, 'no body is kept for a subscriber that will never take it')
})

t.test('regression: the fan-out recreates its consumer group when Redis has lost it', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const { redis, client } = await redisFor(t)
  const { logs } = await startRelay(t, { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' }, redis)
  await waitUntil('the relay to create the consumer group', async () =>
    ((await client.xinfo('GROUPS', INTAKE).catch(() => [])) as unknown[]).length > 0)

  // What a Redis restarted without its data looks like to a running relay: no stream, no group.
  await client.del(INTAKE)
  const id = uniqueEventId()
  await client.xadd(INTAKE, '*', ...await entryFields(client, id, 'CRM'))
  const [request] = await subscriber.waitFor(1)
  t.equal(request!.headers['webhook-id'], id)
  await drained(client)
  t.ok(logs.lines.some((line) => line.msg === 'fan-out failed; retrying'), 'the lost group was noticed')
})

t.test('an upgrade delivers what the previous release left: its layout of records, bodies, entries and completions', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const { redis, client } = await redisFor(t)
  // As the previous release wrote them: the body in a key of its own, every routed subscriber
  // pending on the record, a stream entry without the body, completions in a hash per subscriber.
  const waiting = uniqueEventId()
  await client.xadd(INTAKE, '*', ...await entryFields(client, waiting, 'CRM'))
  const done = uniqueEventId()
  const finishedAt = new Date(Date.now() - 60_000).toISOString()
  const attempt = { attempt: 1, at: finishedAt, durationMs: 3, outcome: 'success', status: 200 }
  await client.multi()
    .zadd(KEYS.completed('CRM').byTime, Date.parse(finishedAt), done)
    .hset(KEYS.completed('CRM').records, done, JSON.stringify({ eventId: done, eventName: 'inquiry.approved', queuedAt: finishedAt, finishedAt, maxAttempts: 11, attempt }))
    .exec()

  const { app } = await startRelay(t, { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' }, redis)
  const [request] = await subscriber.waitFor(1)
  t.equal(request!.headers['webhook-id'], waiting)
  t.equal(request!.body.toString(), personaEvent(waiting), 'the body from its own key')
  await waitForDelivery(app, 'CRM', waiting, 'completed')
  await drained(client)
  t.equal(await client.exists(KEYS.body(waiting)), 0, 'the body released under the old rule: no subscriber left pending')
  t.equal(await client.hget(KEYS.event(waiting), 'pending'), null)
  t.match(await deliveryView(app, 'CRM', done), { state: 'completed', attemptsMade: 1, attempts: [attempt] }, 'an old completion reads as before')
  t.same((await app.delivery.completions.newest('CRM', 10)).map((record) => record.eventId), [waiting, done])
})
