import { readFileSync } from 'node:fs'
import t from 'tap'
import { loadConfig } from '../../src/config/index.js'
import { signedHeaders, startRelay, uniqueEventId } from '../helpers/app.js'
import { ADMIN_TOKEN, admin, eventView, type SubscriberListView } from '../helpers/admin.js'
import { backfillEnv, finishedBackfill, metricSample, postBackfill } from '../helpers/backfill.js'
import { deliveryView, postEvent, waitForDelivery } from '../helpers/delivery.js'
import { API_KEY, startPersonaApi } from '../helpers/persona-api.js'
import { startSubscriber, type TestSubscriber } from '../helpers/subscriber.js'

const TEMPLATE = 'itmpl_Zx4Pq7Lm2Wn9Bv5Rt1Kc8Hs3'
const INQUIRY = 'inq_Fh3kP9wQz2LmN8xRt5VbC1sY'
/** Approved inquiries of the fixtures' template (or another): written in kebab-case, matched in every inflection. */
const FILTER = JSON.stringify({
  'payload.data.attributes.status': 'approved',
  'payload.data.relationships.inquiry-template.data.id': { $in: [TEMPLATE, 'itmpl_B'] }
})

interface Sent {
  label: string
  id: string
  body: string
  wanted: boolean
}

function fixture(name: string): { id: string; body: string } {
  const body = readFileSync(new URL(`../fixtures/${name}`, import.meta.url), 'utf8')
  return { id: (JSON.parse(body) as { data: { id: string } }).data.id, body }
}

/** The three fixtures as sent, and each again, unchanged but for its id and an inquiry template the filter does not list. */
function bodies(): Sent[] {
  const sent: Sent[] = []
  for (const [inflection, name] of [['kebab', 'inquiry.approved.json'], ['camel', 'inquiry.approved.camel.json'], ['snake', 'inquiry.approved.snake.json']] as const) {
    const { id, body } = fixture(name)
    sent.push({ label: `${inflection}, listed template`, id, body, wanted: true })
    const otherId = uniqueEventId()
    const other = body.replace(id, otherId).replace(TEMPLATE, 'itmpl_NotListed000000000000')
    sent.push({ label: `${inflection}, other template`, id: otherId, body: other, wanted: false })
  }
  return sent
}

function receivedBodies(subscriber: TestSubscriber): Map<string, string> {
  return new Map(subscriber.received.map((request) => [String(request.headers['webhook-id']), request.body.toString('utf8')]))
}

t.test('a subscriber with a filter gets only the events it lets through, whatever their key inflection; the other gets all', async (t) => {
  const all = await startSubscriber()
  const approved = await startSubscriber()
  t.teardown(() => Promise.all([all.close(), approved.close()]))
  const { app, config } = await startRelay(t, {
    ADMIN_TOKEN,
    SUBSCRIBER_ALL_URL: all.url,
    SUBSCRIBER_ALL_EVENTS: 'inquiry.*',
    SUBSCRIBER_APPROVED_URL: approved.url,
    SUBSCRIBER_APPROVED_EVENTS: 'inquiry.*',
    SUBSCRIBER_APPROVED_FILTER: FILTER
  })
  const sent = bodies()
  t.equal(new Set(sent.map((event) => event.id)).size, 6)
  t.ok(sent.filter((event) => !event.wanted).every((event) => !event.body.includes(TEMPLATE)), 'the other-template bodies do not name the listed template')

  for (const event of sent) {
    const response = await app.inject({ method: 'POST', url: '/webhooks/persona', headers: signedHeaders(event.body), payload: event.body })
    t.equal(response.statusCode, 200, event.label)
    t.same(response.json(), { received: true, id: event.id }, event.label)
  }
  for (const event of sent) await waitForDelivery(app, 'ALL', event.id, 'completed')
  for (const event of sent.filter((candidate) => candidate.wanted)) await waitForDelivery(app, 'APPROVED', event.id, 'completed')

  const toAll = receivedBodies(all)
  const toApproved = receivedBodies(approved)
  t.equal(all.received.length, 6, 'the unfiltered subscriber got every event once')
  t.equal(approved.received.length, 3, 'the filtered subscriber got the three it lets through, once each')
  for (const event of sent) {
    t.equal(toAll.get(event.id), event.body, `${event.label}: the unfiltered subscriber got the exact bytes`)
    if (event.wanted) t.equal(toApproved.get(event.id), event.body, `${event.label}: the filtered subscriber got the exact bytes`)
    else {
      t.notOk(toApproved.has(event.id), `${event.label}: not sent to the filtered subscriber`)
      t.equal(await deliveryView(app, 'APPROVED', event.id), undefined, `${event.label}: no delivery was ever queued for it`)
    }
  }

  const prefix = config.redis.layout.prefix
  for (const event of sent) {
    const [subscribers, filtered, objectType, objectId] = await app.redis.hmget(`${prefix}:event:${event.id}`, 'subscribers', 'filtered', 'objectType', 'objectId')
    t.same(
      { subscribers, filtered, objectType, objectId },
      { subscribers: event.wanted ? 'ALL,APPROVED' : 'ALL', filtered: event.wanted ? null : 'APPROVED', objectType: 'inquiry', objectId: INQUIRY },
      `${event.label}: the event record`
    )
  }

  const refused = sent.find((event) => !event.wanted && event.label.startsWith('camel'))!
  const view = await eventView(app, refused.id)
  t.same(view.object, { type: 'inquiry', id: INQUIRY })
  t.equal(view.deliveries.length, 2)
  t.match(view.deliveries, [
    { id: `ALL.${refused.id}`, subscriber: 'ALL', state: 'completed', attemptsMade: 1 },
    { id: `APPROVED.${refused.id}`, subscriber: 'APPROVED', eventId: refused.id, eventName: 'inquiry.approved', state: 'skipped', skipReason: 'filtered', attemptsMade: 0, attempts: [] }
  ])
  t.notOk('skipReason' in view.deliveries[0]!, 'a delivery that was sent has no skip reason')
  const letThrough = await eventView(app, sent[0]!.id)
  t.same(letThrough.deliveries.map((delivery) => [delivery.subscriber, delivery.state, delivery.skipReason]), [['ALL', 'completed', undefined], ['APPROVED', 'completed', undefined]])

  const series = (subscriber: string, outcome: string) => `persona_relay_routed_total{subscriber="${subscriber}",outcome="${outcome}"}`
  const counts = async () => Promise.all([series('ALL', 'routed'), series('ALL', 'filtered'), series('APPROVED', 'routed'), series('APPROVED', 'filtered')].map((name) => metricSample(app, name)))
  t.same(await counts(), [6, 0, 3, 3], 'routed_total: ALL routed 6; APPROVED routed 3, filtered 3')

  // A retried webhook is a duplicate: not routed, and not counted, again.
  for (const event of [sent[0]!, refused]) {
    const response = await app.inject({ method: 'POST', url: '/webhooks/persona', headers: signedHeaders(event.body), payload: event.body })
    t.same(response.json(), { received: true, id: event.id, duplicate: true })
  }
  t.same(await counts(), [6, 0, 3, 3], 'duplicates are not counted')

  const { statusCode, body } = await admin<SubscriberListView>(app, 'GET', '/admin/subscribers')
  t.equal(statusCode, 200)
  const byName = new Map(body.subscribers.map((subscriber) => [subscriber.name, subscriber]))
  t.equal(byName.get('APPROVED')?.filter, FILTER, 'the filter as configured')
  t.ok(byName.has('ALL'))
  t.notOk('filter' in byName.get('ALL')!, 'no filter field for a subscriber without one')
})

t.test('an event whose only subscriber filters it out is recorded, acknowledged, sent nowhere and shown as skipped', async (t) => {
  const approved = await startSubscriber()
  t.teardown(() => approved.close())
  const { app, config } = await startRelay(t, {
    ADMIN_TOKEN,
    SUBSCRIBER_APPROVED_URL: approved.url,
    SUBSCRIBER_APPROVED_EVENTS: 'inquiry.*',
    SUBSCRIBER_APPROVED_FILTER: FILTER
  })
  const refused = bodies().find((event) => !event.wanted && event.label.startsWith('snake'))!
  const wanted = bodies().find((event) => event.wanted && event.label.startsWith('snake'))!
  await postEvent(app, refused.body)
  await postEvent(app, wanted.body)
  await waitForDelivery(app, 'APPROVED', wanted.id, 'completed')

  t.same([...receivedBodies(approved).keys()], [wanted.id], 'only the event it lets through')
  t.equal(await app.redis.exists(`${config.redis.layout.prefix}:body:${refused.id}`), 0, 'no body kept for a delivery that will never be made')
  t.match(await eventView(app, refused.id), {
    id: refused.id,
    source: 'webhook',
    object: { type: 'inquiry', id: INQUIRY },
    deliveries: [{ subscriber: 'APPROVED', state: 'skipped', skipReason: 'filtered' }]
  })
  t.equal((await eventView(app, refused.id)).deliveries.length, 1)
  t.equal(await metricSample(app, 'persona_relay_routed_total{subscriber="APPROVED",outcome="filtered"}'), 1)
  t.equal(await metricSample(app, 'persona_relay_routed_total{subscriber="APPROVED",outcome="routed"}'), 1)
})

t.test('backfilled events are filtered as webhooks are, whatever their key inflection', async (t) => {
  const minutesAgo = (minutes: number) => new Date(Date.now() - minutes * 60_000).toISOString()
  // Items of the Events API list, newest first, each spelled in one inflection.
  const item = (id: string, minutes: number, spelling: 'kebab' | 'camel' | 'snake', status: string, nameFirst: string) => {
    const [createdAt, nameKey] = ({ kebab: ['created-at', 'name-first'], camel: ['createdAt', 'nameFirst'], snake: ['created_at', 'name_first'] } as const)[spelling]
    return {
      type: 'event',
      id,
      attributes: {
        name: 'inquiry.approved',
        [createdAt]: minutesAgo(minutes),
        payload: { data: { type: 'inquiry', id: `inq_${id.slice(4)}`, attributes: { status, [nameKey]: nameFirst } } }
      }
    }
  }
  const ids = Array.from({ length: 6 }, () => uniqueEventId())
  const items = [
    item(ids[0]!, 1, 'kebab', 'approved', 'Zoë'),
    item(ids[1]!, 2, 'camel', 'approved', 'Zoë'),
    item(ids[2]!, 3, 'snake', 'approved', 'Zoë'),
    item(ids[3]!, 4, 'kebab', 'declined', 'Zoë'),
    item(ids[4]!, 5, 'camel', 'approved', 'Ann'),
    item(ids[5]!, 6, 'snake', 'declined', 'Ann')
  ]
  const wanted = new Set(ids.slice(0, 3))
  const api = await startPersonaApi({ items })
  const all = await startSubscriber()
  const zoe = await startSubscriber()
  t.teardown(async () => {
    await api.close()
    await Promise.all([all.close(), zoe.close()])
  })
  const { app } = await startRelay(t, {
    ADMIN_TOKEN,
    ...backfillEnv(api.baseUrl, API_KEY),
    SUBSCRIBER_ALL_URL: all.url,
    SUBSCRIBER_ALL_EVENTS: 'inquiry.*',
    SUBSCRIBER_ZOE_URL: zoe.url,
    SUBSCRIBER_ZOE_EVENTS: 'inquiry.*',
    SUBSCRIBER_ZOE_FILTER: '{"payload.data.attributes.status":"approved","payload.data.attributes.nameFirst":{"$in":["Zoë"]}}'
  })

  const started = await postBackfill(app, { since: '1h' })
  t.equal(started.statusCode, 202)
  t.match(await finishedBackfill(app, started.body.id), { status: 'succeeded', seen: 6, queued: 6, invalid: 0 }, 'every item is recorded, filtered or not')
  for (const id of ids) await waitForDelivery(app, 'ALL', id, 'completed')
  for (const id of wanted) await waitForDelivery(app, 'ZOE', id, 'completed')

  const toAll = receivedBodies(all)
  const toZoe = receivedBodies(zoe)
  t.equal(all.received.length, 6)
  t.equal(zoe.received.length, 3)
  for (const [index, id] of ids.entries()) {
    const body = JSON.stringify({ data: items[index] })
    t.equal(toAll.get(id), body, `${id}: the API item to the unfiltered subscriber`)
    if (wanted.has(id)) t.equal(toZoe.get(id), body, `${id}: the API item to the filtered subscriber`)
    else t.notOk(toZoe.has(id), `${id}: not sent to the filtered subscriber`)
  }
  for (const id of ids) {
    const view = await eventView(app, id)
    t.equal(view.source, 'backfill')
    t.same(view.object, { type: 'inquiry', id: `inq_${id.slice(4)}` })
    t.same(
      view.deliveries.map((delivery) => [delivery.subscriber, delivery.state, delivery.skipReason]),
      [['ALL', 'completed', undefined], ['ZOE', wanted.has(id) ? 'completed' : 'skipped', wanted.has(id) ? undefined : 'filtered']],
      `${id}: the deliveries`
    )
  }
  t.equal(await metricSample(app, 'persona_relay_routed_total{subscriber="ALL",outcome="routed"}'), 6)
  t.equal(await metricSample(app, 'persona_relay_routed_total{subscriber="ZOE",outcome="routed"}'), 3)
  t.equal(await metricSample(app, 'persona_relay_routed_total{subscriber="ZOE",outcome="filtered"}'), 3)

  // A second run finds every event recorded: nothing is routed or counted again.
  const again = await postBackfill(app, { since: '1h' })
  t.match(await finishedBackfill(app, again.body.id), { status: 'succeeded', queued: 0, skipped: 6 })
  t.equal(await metricSample(app, 'persona_relay_routed_total{subscriber="ZOE",outcome="filtered"}'), 3)
})

t.test('regression: a filter sift compiles but cannot evaluate ($type: 2) is refused at start-up, not on every webhook', async (t) => {
  // MongoDB's $type takes BSON type numbers; sift throws on one when it matches, not when it compiles.
  t.throws(
    () => loadConfig({
      REDIS_URL: 'redis://127.0.0.1:1',
      PERSONA_WEBHOOK_SECRET: 'wbhsec_x',
      SUBSCRIBER_TYPED_URL: 'http://127.0.0.1:1/hook',
      SUBSCRIBER_TYPED_EVENTS: 'inquiry.*',
      SUBSCRIBER_TYPED_FILTER: '{"payload.data.attributes.status":{"$type":2}}'
    }),
    { name: 'ConfigError', message: /SUBSCRIBER_TYPED_FILTER: Right-hand side of 'instanceof' is not an object/ }
  )
})
