import t from 'tap'
import { personaEvent, uniqueEventId } from '../helpers/app.js'
import { postEvent } from '../helpers/delivery.js'
import { ask, startRedisSentinel } from '../helpers/redis-topology.js'
import {
  breakerOpensAndDashboardLists, deadLettersReplayed, pausesAndResumes, retriesUntilDelivered, routesByPattern, searchesEvents, subscriberFor, topologyTest,
  waitForCompleted, webhookIds
} from '../helpers/topology-relay.js'

// Failover is tested elsewhere: here the primary stays where it started.
t.test('on Redis Sentinel (a primary, a replica, three sentinels)', async (t) => {
  const started = Date.now()
  const sentinel = await startRedisSentinel()
  t.teardown(() => sentinel.stop())
  t.comment(`sentinel topology ready in ${Date.now() - started} ms`)
  const sentinelTest = topologyTest(t, { REDIS_SENTINELS: sentinel.sentinels, REDIS_SENTINEL_NAME: sentinel.name })

  sentinelTest('events are routed to each subscriber by its patterns, and land on the primary the sentinels name', async (t, start) => {
    const { app } = await routesByPattern(t, start, 8)
    t.equal(app.eventStore.keys.partitions.length, 1, 'one intake stream, as on a single node')
    const primary = await sentinel.primary()
    t.equal(primary, sentinel.nodes[0]!.port, 'premise: the primary has not moved')
    t.equal(await ask(primary, undefined, 'XINFO', 'STREAM', app.eventStore.keys.intake(0)).then(Boolean), true, 'the intake stream is on the primary')
  })

  sentinelTest('a delivery answered 500 twice is retried and delivered on attempt 3', async (t, start) => {
    await retriesUntilDelivered(t, start)
  })

  sentinelTest('exhausted deliveries are dead letters, replayed one by id and the rest in bulk', async (t, start) => {
    await deadLettersReplayed(t, start, 2)
  })

  sentinelTest('a paused subscriber is sent nothing until it is resumed', async (t, start) => {
    await pausesAndResumes(t, start, 3)
  })

  sentinelTest('the circuit breaker pauses a failing subscriber, and the dashboard lists its dead letters', async (t, start) => {
    await breakerOpensAndDashboardLists(t, start)
  })

  sentinelTest('search by event id, object id and name, an object\'s events and the subscriber list', async (t, start) => {
    await searchesEvents(t, start)
  })
})

t.test('on Redis Sentinel whose data nodes require a password', async (t) => {
  const password = 'sentinel-data-secret'
  const sentinel = await startRedisSentinel({ password })
  t.teardown(() => sentinel.stop())
  const primary = sentinel.nodes[0]!.port
  await t.rejects(ask(primary, undefined, 'PING'), /NOAUTH/, 'premise: the primary refuses a client without the password')
  // The helper's sentinels hold the data nodes' password (auth-pass) but ask none of their own
  // clients, so the relay needs REDIS_PASSWORD and no REDIS_SENTINEL_PASSWORD.
  const sentinelTest = topologyTest(t, { REDIS_SENTINELS: sentinel.sentinels, REDIS_SENTINEL_NAME: sentinel.name, REDIS_PASSWORD: password })

  sentinelTest('REDIS_PASSWORD reaches the primary: events are recorded, retried and delivered', async (t, start) => {
    const subscriber = await subscriberFor(t, (_request, n) => ({ status: n === 1 ? 503 : 200 }))
    const { app } = await start({ SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: 'inquiry.*' })
    const ids = [uniqueEventId(), uniqueEventId()]
    for (const id of ids) await postEvent(app, personaEvent(id))
    for (const id of ids) await waitForCompleted(app, 'CRM', id)
    t.same([...new Set(webhookIds(subscriber))].sort(), [...ids].sort(), 'both delivered')
    t.equal(subscriber.received.length, 3, 'the first attempt answered 503 was retried')
    t.equal(await ask(primary, password, 'EXISTS', app.eventStore.keys.event(ids[0]!)), 1, 'the record is on the password-protected primary')
    const ready = await app.inject({ method: 'GET', url: '/readyz' })
    t.match(ready.json(), { status: 'ready', checks: { redis: 'ok', delivery: 'ok' } })
  })
})
