import t from 'tap'
import type { App } from '../../src/app.js'
import { personaEvent, signedHeaders, uniqueEventId } from '../helpers/app.js'
import { eventView } from '../helpers/admin.js'
import { backfillEnv, finishedBackfill, metricSample, postBackfill } from '../helpers/backfill.js'
import { postEvent } from '../helpers/delivery.js'
import { API_KEY, apiEvent, startPersonaApi } from '../helpers/persona-api.js'
import { startRedisCluster } from '../helpers/redis-topology.js'
import {
  breakerOpensAndDashboardLists, DELIVERY_WAIT_MS, deadLettersReplayed, pausesAndResumes, retriesUntilDelivered, routesByPattern, searchesEvents, subscriberFor,
  topologyTest, waitForCompleted, webhookIds
} from '../helpers/topology-relay.js'

// One cluster for the whole file (it takes seconds to form); each subtest has a prefix of its own.
const started = Date.now()
const cluster = await startRedisCluster()
t.teardown(() => cluster.stop())
t.comment(`cluster of 3 primaries and 3 replicas ready in ${Date.now() - started} ms`)
const clusterTest = topologyTest(t, { REDIS_CLUSTER_NODES: cluster.startupNodes })

const minutesAgo = (minutes: number) => new Date(Date.now() - minutes * 60_000)

/** The fields of XINFO STREAM or one group of XINFO GROUPS, which ioredis gives as a flat list. */
function fields(flat: unknown): Record<string, unknown> {
  const list = flat as unknown[]
  return Object.fromEntries(list.flatMap((value, index) => (index % 2 ? [] : [[String(value), list[index + 1]]])))
}

async function entriesAdded(app: App, partition: number): Promise<number> {
  return Number(fields(await app.redis.call('XINFO', 'STREAM', app.eventStore.keys.intake(partition))!)['entries-added'])
}

clusterTest('events are routed to each subscriber by its patterns, and /metrics counts each subscriber\'s deliveries', async (t, start) => {
  const { app } = await routesByPattern(t, start, 16)
  // 16 events, a quarter of each name: CRM gets inquiry.approved and inquiry.completed, ERP inquiry.approved and report.ready.
  t.equal(await metricSample(app, 'persona_relay_queue_jobs{subscriber="CRM",state="completed"}'), 8, 'CRM: 8 completed')
  t.equal(await metricSample(app, 'persona_relay_queue_jobs{subscriber="ERP",state="completed"}'), 8, 'ERP: 8 completed')
  for (const subscriber of ['CRM', 'ERP']) {
    for (const state of ['wait', 'delayed', 'active', 'failed']) {
      t.equal(await metricSample(app, `persona_relay_queue_jobs{subscriber="${subscriber}",state="${state}"}`), 0, `${subscriber}: 0 ${state}`)
    }
  }
  t.equal(await metricSample(app, 'persona_relay_intake_total{outcome="accepted"}'), 12, 'the 4 account.created events matched nobody')
  t.equal(await metricSample(app, 'persona_relay_intake_total{outcome="no_subscriber"}'), 4)
})

clusterTest('a delivery answered 500 twice is retried and delivered on attempt 3', async (t, start) => {
  await retriesUntilDelivered(t, start)
})

clusterTest('exhausted deliveries are dead letters in the admin API, replayed one by id and the rest in bulk', async (t, start) => {
  await deadLettersReplayed(t, start, 4)
})

clusterTest('a paused subscriber is sent nothing until it is resumed, then gets each event once', async (t, start) => {
  await pausesAndResumes(t, start, 6)
})

clusterTest('the circuit breaker pauses a failing subscriber, and the dashboard lists its dead letters', async (t, start) => {
  await breakerOpensAndDashboardLists(t, start)
})

clusterTest('a backfill queues and delivers what the webhooks missed, and neither it nor a second run delivers anything twice', async (t, start) => {
  const received = [uniqueEventId(), uniqueEventId()]
  const gap = Array.from({ length: 30 }, () => uniqueEventId())
  const unrouted = gap[10]!
  const items = [
    apiEvent(received[0]!, minutesAgo(1)),
    ...gap.map((id, index) => apiEvent(id, minutesAgo(2 + index * 0.1), id === unrouted ? 'account.created' : 'inquiry.approved')),
    apiEvent(received[1]!, minutesAgo(10))
  ]
  const api = await startPersonaApi({ items })
  t.teardown(() => api.close())
  const subscriber = await subscriberFor(t)
  const { app } = await start({ ...backfillEnv(api.baseUrl, API_KEY), SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: 'inquiry.*' })
  for (const id of received) await postEvent(app, personaEvent(id))
  for (const id of received) await waitForCompleted(app, 'CRM', id)

  const first = await postBackfill(app, { since: '1h' })
  t.equal(first.statusCode, 202)
  t.match(await finishedBackfill(app, first.body.id, DELIVERY_WAIT_MS), { status: 'succeeded', seen: 32, queued: 30, skipped: 2, invalid: 0 },
    'the gap is queued, the events the webhooks brought are skipped')
  const routed = gap.filter((id) => id !== unrouted)
  for (const id of routed) await waitForCompleted(app, 'CRM', id)
  t.equal(new Set(gap.map((id) => app.eventStore.keys.partitionOf(id))).size > 1, true, 'the gap spans several intake partitions')

  const second = await postBackfill(app, { since: '1h' })
  t.equal(second.statusCode, 202)
  t.match(await finishedBackfill(app, second.body.id, DELIVERY_WAIT_MS), { status: 'succeeded', seen: 32, queued: 0, skipped: 32 },
    'a second run finds every event recorded')
  const last = uniqueEventId()
  await postEvent(app, personaEvent(last))
  await waitForCompleted(app, 'CRM', last)

  const ids = webhookIds(subscriber)
  t.same([...ids].sort(), [...received, ...routed, last].sort(), 'every routed event delivered exactly once, webhook or backfill')
  t.notOk(ids.includes(unrouted), 'the backfilled account.created is routed like a webhook: to nobody')
  const sources = new Map(subscriber.received.map((request) => [String(request.headers['webhook-id']), request.headers['persona-relay-source']]))
  t.ok(received.every((id) => sources.get(id) === 'webhook') && routed.every((id) => sources.get(id) === 'backfill'), 'each with its source')
  t.match(await eventView(app, routed[0]!), { source: 'backfill', deliveries: [{ subscriber: 'CRM', state: 'completed' }] })
})

clusterTest('search by event id, object id and name, an object\'s events and the subscriber list read every partition', async (t, start) => {
  const { relay, ids } = await searchesEvents(t, start)
  const partitions = new Set(ids.map((id) => relay.app.eventStore.keys.partitionOf(id)))
  t.ok(partitions.size > 1, `premise: the object's events are in ${partitions.size} partitions`)
  const primaries = new Set(await Promise.all([...partitions].map(async (partition) =>
    (await cluster.primaryForKey(relay.app.eventStore.keys.received(partition))).port)))
  t.ok(primaries.size > 1, `premise: on ${primaries.size} primaries`)
})

clusterTest('a redelivery of a recorded event is acknowledged as a duplicate and not delivered again', async (t, start) => {
  const subscriber = await subscriberFor(t)
  const { app } = await start({ SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' })
  const id = uniqueEventId()
  const body = personaEvent(id)
  await postEvent(app, body)
  await waitForCompleted(app, 'CRM', id)
  const partition = app.eventStore.keys.partitionOf(id)
  const added = await entriesAdded(app, partition)

  for (let copy = 1; copy <= 2; copy += 1) {
    const again = await app.inject({ method: 'POST', url: '/webhooks/persona', headers: signedHeaders(body), payload: body })
    t.equal(again.statusCode, 200, `copy ${copy} is acknowledged`)
    t.same(again.json(), { received: true, id, duplicate: true }, `copy ${copy} is a duplicate`)
  }
  t.equal(await entriesAdded(app, partition), added, 'nothing was added to the event\'s intake stream')
  const later = uniqueEventId()
  await postEvent(app, personaEvent(later))
  await waitForCompleted(app, 'CRM', later)
  t.same(webhookIds(subscriber), [id, later], 'the event was delivered once')
  t.equal(await metricSample(app, 'persona_relay_intake_total{outcome="duplicate"}'), 2)
  t.match((await eventView(app, id)).deliveries, [{ state: 'completed', attemptsMade: 1 }])
})

clusterTest('the intake partitions are spread over all three primaries, and each partition\'s events are read by its own fan-out reader', async (t, start) => {
  const subscriber = await subscriberFor(t)
  const { app } = await start({ SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' })
  const { keys } = app.eventStore
  t.equal(keys.partitions.length, 16, 'a cluster has 16 intake partitions by default')
  const owners = await Promise.all(keys.partitions.map(async (partition) => (await cluster.primaryForKey(keys.intake(partition))).port))
  const primaries = (await cluster.primaries()).map((primary) => primary.port)
  t.same([...new Set(owners)].sort(), [...primaries].sort(), `the 16 intake streams are served by all three primaries (${owners.join(', ')})`)

  // Two events for every partition, as the relay places them (by their ids).
  const ids: string[] = []
  const wanted = new Map(keys.partitions.map((partition) => [partition, 2]))
  while (wanted.size > 0) {
    const id = uniqueEventId()
    const partition = keys.partitionOf(id)
    const left = wanted.get(partition)
    if (left === undefined) continue
    ids.push(id)
    if (left === 1) wanted.delete(partition)
    else wanted.set(partition, left - 1)
  }
  for (const id of ids) await postEvent(app, personaEvent(id))
  for (const id of ids) await waitForCompleted(app, 'CRM', id)
  const misplaced: string[] = []
  for (const id of ids) if (await app.redis.zscore(keys.received(keys.partitionOf(id)), id) === null) misplaced.push(id)
  t.same(misplaced, [], 'each event is in the index of received events of the partition its id names')
  const perPartition = await Promise.all(keys.partitions.map(async (partition) => {
    const [group] = (await app.redis.call('XINFO', 'GROUPS', keys.intake(partition)) as unknown[]).map(fields)
    return [await app.redis.zcard(keys.received(partition)), Number(group?.['entries-read']), Number(group?.consumers)]
  }))
  t.same(perPartition, keys.partitions.map(() => [2, 2, 1]), 'every partition received 2 events, and its one fan-out reader read both')
  t.equal(subscriber.received.length, ids.length, 'and delivered them, once each')
})

clusterTest('two relays on one cluster and prefix share the work: 40 events, each delivered exactly once', async (t, start) => {
  const subscriber = await subscriberFor(t)
  const env = { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' }
  const relays = [await start(env), await start(env)]
  const ids = Array.from({ length: 40 }, () => uniqueEventId())
  for (const [index, id] of ids.entries()) await postEvent(relays[index % 2]!.app, personaEvent(id))
  await subscriber.waitFor(40, DELIVERY_WAIT_MS)
  // Asked of the relay that did not take the event: both read the same store.
  for (const [index, id] of ids.entries()) await waitForCompleted(relays[(index + 1) % 2]!.app, 'CRM', id)
  // Every delivery is complete, so no attempt of these events is still under way anywhere.
  const attempts = relays.map(({ logs }) => logs.lines.filter((line) => line.msg === 'delivery attempt').length)
  t.same([...webhookIds(subscriber)].sort(), [...ids].sort(), 'the subscriber saw each webhook-id once')
  t.equal(attempts[0]! + attempts[1]!, 40, `one attempt per event across the two relays (${attempts.join(' + ')})`)
  t.ok(attempts.every((count) => count > 0), 'both relays delivered some')
})
