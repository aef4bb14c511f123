import type { Test } from 'tap'
import type { App } from '../../src/app.js'
import { personaEvent, SECRET, startRelayWith, uniqueEventId, type TestRelay } from './app.js'
import { ADMIN_TOKEN, admin, eventView, type DeliveryListView, type EventView, type SubscriberListView } from './admin.js'
import { metricSample } from './backfill.js'
import { postEvent, waitForJob } from './delivery.js'
import { startSubscriber, type TestSubscriber } from './subscriber.js'
import { waitUntil } from './wait-until.js'

/** What Redis Cluster, or ioredis on its behalf, says when one command or pipeline spans slots. */
export const SLOT_ERRORS = /CROSSSLOT|should belong to the same slot|same slots allocation group/

/** Deliveries on a busy two-core machine with a real cluster in between: generous, never a sleep. */
export const DELIVERY_WAIT_MS = 30_000

export type Relay = Omit<TestRelay, 'redis'>
export type StartRelay = (env?: Record<string, string>) => Promise<Relay>

let prefixes = 0

/**
 * A subtest whose relays all use `redisEnv` (a cluster's or sentinels' variables) under a prefix of
 * their own, so that subtests sharing one topology do not see each other's data. When the subtest
 * ends, no relay it started may have logged a cross-slot refusal.
 */
export function topologyTest(parent: Test, redisEnv: Record<string, string>) {
  return (name: string, body: (t: Test, start: StartRelay) => Promise<void>) => parent.test(name, async (t) => {
    prefixes += 1
    const prefix = `topology-${process.pid}-${prefixes}`
    const relays: Relay[] = []
    const start: StartRelay = async (env = {}) => {
      const relay = await startRelayWith(t, {
        ...redisEnv,
        PERSONA_WEBHOOK_SECRET: SECRET,
        LOG_LEVEL: 'info',
        DELIVERY_RETRY_SCHEDULE: '0.05',
        DELIVERY_TIMEOUT_MS: '5000',
        ADMIN_TOKEN,
        REDIS_PREFIX: prefix,
        ...env
      })
      relays.push(relay)
      return relay
    }
    try {
      await body(t, start)
    } finally {
      for (const [index, relay] of relays.entries()) {
        const offending = relay.logs.text().split('\n').filter((line) => SLOT_ERRORS.test(line))
        t.same(offending, [], `relay ${index + 1} of ${relays.length} logged no cross-slot error`)
      }
    }
  })
}

/** Waits, with the generous deadline, for GET /admin/events/:id to show the subscriber's delivery completed. */
export async function waitForCompleted(app: App, subscriber: string, eventId: string) {
  return await waitUntil(`delivery ${eventId} of ${subscriber} to complete`, async () => {
    const view = (await eventView(app, eventId)).deliveries.find((delivery) => delivery.subscriber === subscriber)
    return view?.state === 'completed' && view
  }, DELIVERY_WAIT_MS, 50)
}

export async function subscriberFor(t: Test, behaviour?: Parameters<typeof startSubscriber>[0]): Promise<TestSubscriber> {
  const subscriber = await startSubscriber(behaviour)
  t.teardown(() => subscriber.close())
  return subscriber
}

export const webhookIds = (subscriber: TestSubscriber) => subscriber.received.map((request) => String(request.headers['webhook-id']))

const about = (objectId: string) => ({ payload: { data: { type: 'inquiry', id: objectId } } })

async function failedDeliveries(app: App): Promise<DeliveryListView['items']> {
  const { statusCode, body } = await admin<DeliveryListView>(app, 'GET', '/admin/deliveries?state=failed&limit=200')
  if (statusCode !== 200) throw new Error(`GET /admin/deliveries answered ${statusCode}: ${JSON.stringify(body)}`)
  return body.items
}

/** Two subscribers with overlapping patterns: each gets exactly what its patterns match, and an event no pattern matches goes nowhere. */
export async function routesByPattern(t: Test, start: StartRelay, count = 12): Promise<Relay> {
  const crm = await subscriberFor(t)
  const erp = await subscriberFor(t)
  const relay = await start({
    SUBSCRIBER_CRM_URL: crm.url,
    SUBSCRIBER_CRM_EVENTS: 'inquiry.*',
    SUBSCRIBER_ERP_URL: erp.url,
    SUBSCRIBER_ERP_EVENTS: 'inquiry.approved,report.*'
  })
  const names = ['inquiry.approved', 'inquiry.completed', 'report.ready', 'account.created']
  const sent = Array.from({ length: count }, (_, index) => ({ id: uniqueEventId(), name: names[index % names.length]! }))
  for (const { id, name } of sent) await postEvent(relay.app, personaEvent(id, name))
  const forCrm = sent.filter(({ name }) => name.startsWith('inquiry.')).map(({ id }) => id)
  const forErp = sent.filter(({ name }) => name === 'inquiry.approved' || name.startsWith('report.')).map(({ id }) => id)

  for (const id of forCrm) await waitForCompleted(relay.app, 'CRM', id)
  for (const id of forErp) await waitForCompleted(relay.app, 'ERP', id)
  t.same(webhookIds(crm).sort(), [...forCrm].sort(), 'CRM (inquiry.*) got each inquiry event once and nothing else')
  t.same(webhookIds(erp).sort(), [...forErp].sort(), 'ERP (inquiry.approved, report.*) got each approval and report once and nothing else')
  for (const { id, name } of sent) {
    const routed = [...(forCrm.includes(id) ? ['CRM'] : []), ...(forErp.includes(id) ? ['ERP'] : [])]
    const view = await eventView(relay.app, id)
    t.same(view.deliveries.map((delivery) => [delivery.subscriber, delivery.state]).sort(), routed.map((subscriber) => [subscriber, 'completed']),
      `${name}: routed to ${routed.join(', ') || 'nobody'}`)
  }
  return relay
}

/** A subscriber that answers 500 twice and then 200 gets the event a third time, with the same id and bytes, and it is delivered. */
export async function retriesUntilDelivered(t: Test, start: StartRelay): Promise<void> {
  const subscriber = await subscriberFor(t, (_request, n) => (n <= 2 ? { status: 500, body: `fail ${n}` } : { status: 200 }))
  const { app } = await start({ SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*', SUBSCRIBER_CRM_MAX_ATTEMPTS: '5' })
  const id = uniqueEventId()
  const body = personaEvent(id)
  await postEvent(app, body)
  await subscriber.waitFor(3, DELIVERY_WAIT_MS)
  const delivery = await waitForCompleted(app, 'CRM', id)
  t.same(subscriber.received.map((request) => request.headers['persona-relay-attempt']), ['1', '2', '3'], 'attempts 1, 2 and 3')
  t.same(webhookIds(subscriber), [id, id, id], 'the same webhook-id every time')
  t.ok(subscriber.received.every((request) => request.body.toString() === body), 'the same bytes every time')
  t.match(delivery, {
    state: 'completed',
    attemptsMade: 3,
    attempts: [
      { attempt: 1, outcome: 'http_error', status: 500, response: 'fail 1' },
      { attempt: 2, outcome: 'http_error', status: 500, response: 'fail 2' },
      { attempt: 3, outcome: 'success', status: 200 }
    ]
  }, 'delivered on attempt 3, with its history')
  t.equal(delivery.attempts.length, 3)
  t.equal(await app.redis.get(app.eventStore.keys.body(id)), null, 'delivered: the body is released')
}

/**
 * Deliveries that spend their attempts are dead letters, listed and shown as failed; one is
 * replayed by id and the rest in bulk, and each is then delivered once.
 */
export async function deadLettersReplayed(t: Test, start: StartRelay, count = 3): Promise<void> {
  let healthy = false
  const subscriber = await subscriberFor(t, () => (healthy ? { status: 204 } : { status: 500, body: 'down' }))
  const { app } = await start({
    SUBSCRIBER_CRM_URL: subscriber.url,
    SUBSCRIBER_CRM_EVENTS: '*',
    SUBSCRIBER_CRM_MAX_ATTEMPTS: '2',
    SUBSCRIBER_CRM_PAUSE_AFTER_FAILURES: '1000000'
  })
  const ids = Array.from({ length: count }, () => uniqueEventId())
  for (const id of ids) await postEvent(app, personaEvent(id))

  const failed = await waitUntil(`${count} dead letters`, async () => {
    const items = await failedDeliveries(app)
    return items.length === count && items
  }, DELIVERY_WAIT_MS, 100)
  t.same(failed.map((item) => item.id).sort(), ids.map((id) => `CRM.${id}`).sort(), 'GET /admin/deliveries?state=failed lists each once')
  t.ok(failed.every((item) => item.state === 'failed' && item.deadLetterReason === 'exhausted' && item.attemptsMade === 2), 'exhausted after 2 attempts')
  t.equal(subscriber.received.length, 2 * count, 'two attempts each, no more')
  for (const id of ids) {
    t.match((await eventView(app, id)).deliveries, [{
      id: `CRM.${id}`, state: 'failed', deadLetterReason: 'exhausted', failedReason: /HTTP 500/,
      attempts: [{ attempt: 1, status: 500 }, { attempt: 2, status: 500 }]
    }], `GET /admin/events/${id} shows the dead letter`)
    t.not(await app.redis.get(app.eventStore.keys.body(id)), null, 'its body is kept for a replay')
  }
  t.equal(await metricSample(app, 'persona_relay_queue_jobs{subscriber="CRM",state="failed"}'), count, '/metrics counts the dead letters')

  healthy = true
  const [first, ...rest] = ids as [string, ...string[]]
  const one = await admin(app, 'POST', `/admin/deliveries/CRM.${first}/retry`)
  t.equal(one.statusCode, 202, 'one dead letter re-queued by id')
  t.match(one.body, { id: `CRM.${first}`, attemptsMade: 0, maxAttempts: 2 })
  await waitForCompleted(app, 'CRM', first)
  t.same((await failedDeliveries(app)).map((item) => item.id).sort(), rest.map((id) => `CRM.${id}`).sort(), 'only the others are still failed')

  t.same(await admin(app, 'POST', '/admin/deliveries/retry', { subscriber: 'CRM' }), { statusCode: 202, body: { retried: rest.length } }, 'the rest in bulk')
  for (const id of rest) await waitForCompleted(app, 'CRM', id)
  t.same(await failedDeliveries(app), [], 'no dead letter is left')
  const deliveredAfterReplay = subscriber.received.slice(2 * count)
  t.same(deliveredAfterReplay.map((request) => String(request.headers['webhook-id'])).sort(), [...ids].sort(), 'each replayed delivery sent once')
  t.ok(deliveredAfterReplay.every((request) => request.headers['persona-relay-attempt'] === '1'), 'with a fresh budget')
  for (const id of ids) {
    t.match((await eventView(app, id)).deliveries, [{ state: 'completed', attempts: [{ status: 500 }, { status: 500 }, { status: 204 }] }], `${id}: history kept`)
    t.equal(await app.redis.get(app.eventStore.keys.body(id)), null, 'and its body released')
  }
}

/** A paused subscriber gets nothing (its deliveries wait as jobs, shown paused) while another keeps receiving; resumed, it gets each once. */
export async function pausesAndResumes(t: Test, start: StartRelay, count = 4): Promise<void> {
  const crm = await subscriberFor(t)
  const other = await subscriberFor(t)
  const { app } = await start({
    SUBSCRIBER_CRM_URL: crm.url,
    SUBSCRIBER_CRM_EVENTS: '*',
    SUBSCRIBER_OTHER_URL: other.url,
    SUBSCRIBER_OTHER_EVENTS: '*'
  })
  const paused = await admin(app, 'POST', '/admin/subscribers/CRM/pause')
  t.equal(paused.statusCode, 200)
  t.match(paused.body, { name: 'CRM', state: 'paused', pauseReason: 'manual' })

  const ids = Array.from({ length: count }, () => uniqueEventId())
  for (const id of ids) await postEvent(app, personaEvent(id))
  for (const id of ids) await waitForCompleted(app, 'OTHER', id)
  const jobs = await Promise.all(ids.map((id) => waitForJob(app, 'CRM', id, 'waiting')))
  t.ok(jobs.every((job) => job.attemptsMade === 0), 'the paused subscriber\'s deliveries wait as jobs, unattempted')
  t.equal(crm.received.length, 0, 'nothing is sent to the paused subscriber')
  t.equal(other.received.length, count, 'while the other subscriber got every event')
  for (const id of ids) {
    t.match((await eventView(app, id)).deliveries, [
      { id: `CRM.${id}`, state: 'paused', attemptsMade: 0, attempts: [] },
      { id: `OTHER.${id}`, state: 'completed' }
    ], `${id} shows paused for CRM`)
  }
  const subscribers = (await admin<SubscriberListView>(app, 'GET', '/admin/subscribers')).body.subscribers
  t.match(subscribers.find((subscriber) => subscriber.name === 'CRM'), { state: 'paused', counts: { pending: count, completed: 0 } })
  t.equal(await metricSample(app, 'persona_relay_subscriber_paused{subscriber="CRM"}'), 1, '/metrics shows the pause')
  t.equal(crm.received.length, 0, 'still nothing sent')

  const resumed = await admin(app, 'POST', '/admin/subscribers/CRM/resume')
  t.equal(resumed.statusCode, 200)
  t.match(resumed.body, { name: 'CRM', state: 'active' })
  for (const id of ids) await waitForCompleted(app, 'CRM', id)
  t.same(webhookIds(crm).sort(), [...ids].sort(), 'resumed, it gets each event once')
  t.ok(crm.received.every((request) => request.headers['persona-relay-attempt'] === '1'), 'each on its first attempt')
  t.equal(await metricSample(app, 'persona_relay_subscriber_paused{subscriber="CRM"}'), 0)
}

interface SearchView { match: string; items: EventView[] }

/** Search by event id, object id and name, an object's events, and the subscriber list, over events spread across partitions. */
export async function searchesEvents(t: Test, start: StartRelay): Promise<{ relay: Relay; ids: string[] }> {
  const subscriber = await subscriberFor(t)
  const relay = await start({ SUBSCRIBER_KYC_URL: subscriber.url, SUBSCRIBER_KYC_EVENTS: 'inquiry.*' })
  const { app } = relay
  const objectId = `inq_search${process.pid}x${Date.now().toString(36)}`
  const name = `inquiry.searched-${Date.now().toString(36)}`
  const ids = Array.from({ length: 8 }, () => uniqueEventId())
  for (const [index, id] of ids.entries()) {
    await postEvent(app, personaEvent(id, index % 2 ? name : 'inquiry.completed', {
      'created-at': `2026-11-27T10:00:0${index}.000Z`, ...about(objectId)
    }))
  }
  const unrelated = uniqueEventId()
  await postEvent(app, personaEvent(unrelated, 'inquiry.approved', about('inq_someoneElse')))
  for (const id of [...ids, unrelated]) await waitForCompleted(app, 'KYC', id)

  const search = async (query: string) => {
    const { statusCode, body } = await admin<SearchView>(app, 'GET', `/admin/events?${query}`)
    t.equal(statusCode, 200, query)
    return { match: body.match, ids: body.items.map((item) => item.id), items: body.items }
  }
  // Events received in the same millisecond may be listed in either order.
  const newestReceivedFirst = (items: EventView[]) => items.every((item, index) => index === 0 || item.receivedAt <= items[index - 1]!.receivedAt)
  const newestFirst = [...ids].reverse()
  const byId = await search(`q=${ids[3]}`)
  t.same([byId.match, byId.ids], ['event', [ids[3]]], 'by event id')
  t.match(byId.items[0], { name, deliveries: [{ subscriber: 'KYC', state: 'completed' }] })
  const byObject = await search(`q=${objectId}`)
  t.equal(byObject.match, 'object')
  t.same([...byObject.ids].sort(), [...ids].sort(), 'by object id: every event about it, and only those')
  t.ok(newestReceivedFirst(byObject.items), 'newest received first')
  const byName = await search(`q=${encodeURIComponent(name)}`)
  t.equal(byName.match, 'name')
  t.same([...byName.ids].sort(), ids.filter((_id, index) => index % 2 === 1).sort(), 'by event name: its events and only those')
  t.ok(newestReceivedFirst(byName.items), 'newest received first')
  const all = await search('limit=200')
  t.same([...all.ids].sort(), [unrelated, ...ids].sort(), 'no query: every event')
  t.ok(newestReceivedFirst(all.items), 'newest received first')

  const object = await admin<{ id: string; type: string; events: EventView[] }>(app, 'GET', `/admin/objects/${objectId}`)
  t.equal(object.statusCode, 200)
  t.match(object.body, { id: objectId, type: 'inquiry' })
  t.same(object.body.events.map((event) => event.id), newestFirst, 'GET /admin/objects/:id lists its events newest created-at first')
  t.ok(object.body.events.every((event) => event.deliveries[0]?.state === 'completed'))
  t.equal((await admin(app, 'GET', '/admin/objects/inq_neverSeen')).statusCode, 404)

  const { body: list } = await admin<SubscriberListView>(app, 'GET', '/admin/subscribers')
  t.match(list.subscribers, [{ name: 'KYC', url: subscriber.url, patterns: ['inquiry.*'], state: 'active', counts: { pending: 0, failed: 0, completed: ids.length + 1 } }],
    'GET /admin/subscribers counts every completed delivery')
  t.equal(list.subscribers.length, 1)
  return { relay, ids }
}

/**
 * The circuit breaker opens after the failures it counts, across the subscriber's keys, and the
 * dashboard (bull-board) lists the queue and its dead letter from BullMQ's own keys.
 */
export async function breakerOpensAndDashboardLists(t: Test, start: StartRelay): Promise<void> {
  const failing = await subscriberFor(t, () => ({ status: 500 }))
  const { app } = await start({
    SUBSCRIBER_CRM_URL: failing.url,
    SUBSCRIBER_CRM_EVENTS: '*',
    SUBSCRIBER_CRM_MAX_ATTEMPTS: '1',
    SUBSCRIBER_CRM_PAUSE_AFTER_FAILURES: '2',
    BREAKER_PROBE_INTERVAL_SECONDS: '3600'
  })
  const ids = [uniqueEventId(), uniqueEventId()]
  for (const id of ids) await postEvent(app, personaEvent(id))
  const paused = await waitUntil('the breaker to open', async () => {
    const { subscribers } = (await admin<SubscriberListView>(app, 'GET', '/admin/subscribers')).body
    return subscribers.find((subscriber) => subscriber.name === 'CRM' && subscriber.state === 'paused')
  }, DELIVERY_WAIT_MS)
  t.match(paused, { pauseReason: 'breaker', consecutiveFailures: 2 }, 'paused by the breaker after two failures')

  const board = await app.inject({ method: 'GET', url: '/admin/queues/api/queues?activeQueue=delivery-CRM&status=failed&page=1', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
  t.equal(board.statusCode, 200)
  const [queue] = board.json<{ queues: { name: string; counts: Record<string, number>; jobs: { id: string }[] }[] }>().queues
  t.match(queue, { name: 'delivery-CRM', counts: { failed: 2 } }, 'the dashboard counts the dead letters')
  t.same(queue!.jobs.map((job) => job.id).sort(), [...ids].sort(), 'and lists them')
}
