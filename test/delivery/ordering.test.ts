import t from 'tap'
import { personaEvent, startRelay, uniqueEventId } from '../helpers/app.js'
import { ADMIN_TOKEN, eventView } from '../helpers/admin.js'
import { postEvent, waitForDelivery } from '../helpers/delivery.js'
import { startSubscriber, type Behaviour, type ReceivedRequest } from '../helpers/subscriber.js'
import { waitUntil } from '../helpers/wait-until.js'

const at = (minute: number) => `2026-11-27T10:${String(minute).padStart(2, '0')}:00.000Z`

/** An event about one inquiry; `spelling` picks the webhook's key inflection for created-at. */
function aboutInquiry(objectId: string, name: string, minute: number, spelling: 'created-at' | 'createdAt' | 'created_at' = 'created-at') {
  const id = uniqueEventId()
  const body = JSON.stringify({
    data: { type: 'event', id, attributes: { name, [spelling]: at(minute), payload: { data: { type: 'inquiry', id: objectId } } } }
  })
  return { id, body }
}

const eventIdOf = (request: ReceivedRequest) => JSON.parse(request.body.toString()).data.id as string

/** A subscriber that takes `ms` to answer and records how many requests of each object it holds at once. */
function tracking(ms: number, answer: (request: ReceivedRequest, n: number) => number = () => 200) {
  const inFlight = new Map<string, number>()
  const overlaps: string[] = []
  let most = 0
  const behaviour: Behaviour = (request, n) => {
    const object = JSON.parse(request.body.toString()).data.attributes.payload?.data?.id ?? '-'
    const now = (inFlight.get(object) ?? 0) + 1
    inFlight.set(object, now)
    if (now > 1) overlaps.push(object)
    most = Math.max(most, [...inFlight.values()].reduce((sum, count) => sum + count, 0))
    setTimeout(() => inFlight.set(object, inFlight.get(object)! - 1), ms)
    return { status: answer(request, n), delayMs: ms }
  }
  return { behaviour, overlaps, mostAtOnce: () => most }
}

t.test('three events of one inquiry sent in reverse created-at order within 100 ms reach an ordered subscriber in created-at order', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, {
    SUBSCRIBER_KYC_URL: subscriber.url, SUBSCRIBER_KYC_EVENTS: 'inquiry.*', SUBSCRIBER_KYC_ORDERING: 'object', SUBSCRIBER_KYC_ORDERING_WINDOW_MS: '500'
  })
  const completed = aboutInquiry('inq_ORDER1', 'inquiry.completed', 1, 'created_at')
  const approved = aboutInquiry('inq_ORDER1', 'inquiry.approved', 2, 'createdAt')
  const reviewed = aboutInquiry('inq_ORDER1', 'inquiry.marked-for-review', 3)
  for (const event of [reviewed, approved, completed]) await postEvent(app, event.body)
  const received = await subscriber.waitFor(3, 10_000)
  t.same(received.map(eventIdOf), [completed.id, approved.id, reviewed.id], 'sorted by created-at, whatever its spelling')
  t.ok(received.every((request) => request.headers['persona-relay-stale'] === undefined), 'none of them is stale')
})

t.test('a slow subscriber never sees two deliveries of one object at once, while different objects overlap', async (t) => {
  const slow = tracking(150)
  const subscriber = await startSubscriber(slow.behaviour)
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, {
    SUBSCRIBER_KYC_URL: subscriber.url, SUBSCRIBER_KYC_EVENTS: 'inquiry.*', SUBSCRIBER_KYC_ORDERING: 'object', SUBSCRIBER_KYC_CONCURRENCY: '8'
  })
  const sent: Record<string, string[]> = {}
  for (let minute = 1; minute <= 4; minute++) {
    for (const object of ['inq_A', 'inq_B', 'inq_C']) {
      const event = aboutInquiry(object, 'inquiry.approved', minute)
      ;(sent[object] ??= []).push(event.id)
      await postEvent(app, event.body)
    }
  }
  const received = await subscriber.waitFor(12, 20_000)
  t.same(slow.overlaps, [], 'no object had two deliveries in flight')
  t.ok(slow.mostAtOnce() >= 2, `different objects were in flight together (at most ${slow.mostAtOnce()})`)
  for (const [object, ids] of Object.entries(sent)) {
    t.same(received.map(eventIdOf).filter((id) => ids.includes(id)), ids, `${object}'s events in created-at order`)
  }
})

t.test('a failing delivery holds back only its own object, and a dead letter releases the next', async (t) => {
  const failing = aboutInquiry('inq_FAILS', 'inquiry.completed', 1)
  const subscriber = await startSubscriber((request) => ({ status: eventIdOf(request) === failing.id ? 500 : 200 }))
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, {
    ADMIN_TOKEN,
    SUBSCRIBER_KYC_URL: subscriber.url,
    SUBSCRIBER_KYC_EVENTS: 'inquiry.*',
    SUBSCRIBER_KYC_ORDERING: 'object',
    SUBSCRIBER_KYC_MAX_ATTEMPTS: '3',
    SUBSCRIBER_KYC_RETRY_SCHEDULE: '1'
  })
  const heldBack = aboutInquiry('inq_FAILS', 'inquiry.approved', 2)
  const other = aboutInquiry('inq_FINE', 'inquiry.approved', 2)
  await postEvent(app, failing.body)
  await waitUntil('the first failure', async () => subscriber.received.length >= 1)
  await postEvent(app, heldBack.body)
  await postEvent(app, other.body)
  await waitForDelivery(app, 'KYC', other.id, 'completed')
  t.notOk(subscriber.received.some((request) => eventIdOf(request) === heldBack.id), 'the failing object\'s next event waits while the other object flows')
  t.not((await waitForDelivery(app, 'KYC', failing.id, 'failed')).attemptsMade, 0)
  await waitForDelivery(app, 'KYC', heldBack.id, 'completed')
  const order = subscriber.received.map(eventIdOf).filter((id) => id === failing.id || id === heldBack.id)
  t.same(order, [failing.id, failing.id, failing.id, heldBack.id], 'three attempts, a dead letter, then the next event')
  const waited = await eventView(app, heldBack.id)
  t.equal(waited.deliveries[0]!.attemptsMade, 1, 'waiting for its turn spent no attempt')
})

t.test('an event older than one delivered for its object is stale: sent with persona-relay-stale, or skipped with STALE=skip', async (t) => {
  for (const stale of ['deliver', 'skip'] as const) {
    const subscriber = await startSubscriber()
    t.teardown(() => subscriber.close())
    const { app } = await startRelay(t, {
      ADMIN_TOKEN,
      SUBSCRIBER_KYC_URL: subscriber.url,
      SUBSCRIBER_KYC_EVENTS: 'inquiry.*',
      SUBSCRIBER_KYC_ORDERING: 'object',
      ...(stale === 'skip' ? { SUBSCRIBER_KYC_STALE: 'skip' } : {})
    })
    const newer = aboutInquiry('inq_STALE', 'inquiry.declined', 5)
    const older = aboutInquiry('inq_STALE', 'inquiry.approved', 4)
    await postEvent(app, newer.body)
    await waitForDelivery(app, 'KYC', newer.id, 'completed')
    await postEvent(app, older.body)
    // An event with no object is never ordered or stale.
    await postEvent(app, personaEvent(uniqueEventId(), 'inquiry.created', { payload: {} }))
    if (stale === 'deliver') {
      await subscriber.waitFor(3)
      const late = subscriber.received.find((request) => eventIdOf(request) === older.id)!
      t.equal(late.headers['persona-relay-stale'], 'true', 'deliver: sent, marked stale')
      t.equal(subscriber.received.filter((request) => request.headers['persona-relay-stale']).length, 1, 'only the stale one is marked')
    } else {
      await subscriber.waitFor(2)
      const view = await waitUntil('the skipped delivery', async () => {
        const delivery = (await eventView(app, older.id)).deliveries[0]
        return delivery?.state === 'skipped' ? delivery : undefined
      })
      t.equal(view.skipReason, 'stale', 'skip: a delivery in state skipped, reason stale')
      t.notOk(subscriber.received.some((request) => eventIdOf(request) === older.id), 'and never sent')
      const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body
      t.match(metrics, /persona_relay_delivery_skipped_total\{subscriber="KYC",reason="stale"\} 1/)
    }
  }
})

t.test('a lane held by a delivery that has nothing left to send (its relay died at the wrong moment) does not stay stuck', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const { app, config } = await startRelay(t, { SUBSCRIBER_KYC_URL: subscriber.url, SUBSCRIBER_KYC_EVENTS: 'inquiry.*', SUBSCRIBER_KYC_ORDERING: 'object' })
  // A holder with no job, and an earlier event waiting with no job either: what a crash between a
  // completion and the lane's release, or before a job was added, leaves behind.
  const keys = app.eventStore.keys.lane('KYC', 'inq_STUCK')
  await app.redis.hset(keys.state, 'holder', 'evt_ghostHolder')
  await app.redis.zadd(keys.waiting, Date.parse(at(0)), 'evt_ghostWaiting')
  const event = aboutInquiry('inq_STUCK', 'inquiry.approved', 1)
  const posted = Date.now()
  await postEvent(app, event.body)
  await subscriber.waitFor(1, 15_000)
  t.equal(eventIdOf(subscriber.received[0]!), event.id, 'the event was delivered past both')
  t.ok(subscriber.received[0]!.at - posted < 2000, `at once, not after a recheck (${subscriber.received[0]!.at - posted} ms)`)
  await waitUntil('the lane to be released', async () => (await app.redis.hget(keys.state, 'holder')) === null)
  t.same(await app.redis.zrange(keys.waiting, '0', '-1'), [], 'and no one waits in it')
  t.ok(config.subscribers[0]!.ordering, 'the subscriber is ordered')
})
