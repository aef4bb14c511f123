import t from 'tap'
import type { Static } from 'typebox'
import type { ObjectSchema } from '../../../src/ops/admin/schemas.js'
import { Errors } from '../../../src/errors.js'
import { startRelay, uniqueEventId } from '../../helpers/app.js'
import { ADMIN_TOKEN, admin, eventView } from '../../helpers/admin.js'
import { postEvent, waitForDelivery, waitForJob } from '../../helpers/delivery.js'
import { startSubscriber } from '../../helpers/subscriber.js'

type ObjectView = Static<typeof ObjectSchema>

const INQUIRY = 'inq_Fh3kP9wQz2LmN8xRt5VbC1sY'
const OTHER_INQUIRY = 'inq_Other0000000000000000'
const VERIFICATION = 'ver_Gh8Jk3Lm6Np1Qr4St9Uv2Wx7Y'
const DEDUPE_TTL_SECONDS = 3600

/** A webhook body whose `created-at` is spelled as the given key inflection spells it. */
function body(id: string, name: string, createdAtKey: 'created-at' | 'createdAt' | 'created_at', createdAt: string, object: { type: string; id: string }, status: string): string {
  return JSON.stringify({
    data: {
      type: 'event',
      id,
      attributes: { name, [createdAtKey]: createdAt, payload: { data: { ...object, attributes: { status } } } }
    }
  })
}

t.test('an object lists its events newest created-at first, each as GET /admin/events/:id shows it', async (t) => {
  const ok = await startSubscriber()
  const failing = await startSubscriber(() => ({ status: 500 }))
  t.teardown(() => Promise.all([ok.close(), failing.close()]))
  const { app, config } = await startRelay(t, {
    ADMIN_TOKEN,
    DEDUPE_TTL_SECONDS: String(DEDUPE_TTL_SECONDS),
    SUBSCRIBER_APPROVED_URL: ok.url,
    SUBSCRIBER_APPROVED_EVENTS: 'inquiry.*',
    SUBSCRIBER_APPROVED_FILTER: '{"payload.data.attributes.status":"approved"}',
    SUBSCRIBER_CRM_URL: ok.url,
    SUBSCRIBER_CRM_EVENTS: 'inquiry.*',
    SUBSCRIBER_ERP_URL: failing.url,
    SUBSCRIBER_ERP_EVENTS: 'inquiry.approved',
    SUBSCRIBER_ERP_MAX_ATTEMPTS: '1',
    SUBSCRIBER_ERP_PAUSE_AFTER_FAILURES: '1000000'
  })
  const inquiry = { type: 'inquiry', id: INQUIRY }
  const [oldest, middle, newest, other, verification] = Array.from({ length: 5 }, () => uniqueEventId()) as [string, string, string, string, string]
  // Sent neither in created-at order nor in its reverse; the oldest carries an offset, so that its
  // created-at sorts last as a string but first in time.
  const sent = [
    body(newest, 'inquiry.approved', 'createdAt', '2026-11-27T10:00:03.000Z', inquiry, 'approved'),
    body(oldest, 'inquiry.created', 'created_at', '2026-11-27T11:00:01.000+01:00', inquiry, 'created'),
    body(other, 'inquiry.approved', 'created-at', '2026-11-27T10:00:05.000Z', { type: 'inquiry', id: OTHER_INQUIRY }, 'approved'),
    body(middle, 'inquiry.completed', 'created-at', '2026-11-27T10:00:02.000Z', inquiry, 'completed'),
    body(verification, 'verification.passed', 'created-at', '2026-11-27T10:00:04.000Z', { type: 'verification/government-id', id: VERIFICATION }, 'passed')
  ]
  for (const event of sent) await postEvent(app, event)
  for (const id of [oldest, middle, newest, other]) await waitForDelivery(app, 'CRM', id, 'completed')
  for (const id of [newest, other]) {
    await waitForDelivery(app, 'APPROVED', id, 'completed')
    await waitForJob(app, 'ERP', id, 'failed')
  }

  const { statusCode, body: view } = await admin<ObjectView>(app, 'GET', `/admin/objects/${INQUIRY}`)
  t.equal(statusCode, 200)
  t.equal(view.id, INQUIRY)
  t.equal(view.type, 'inquiry')
  t.same(view.events.map((event) => event.id), [newest, middle, oldest], 'newest created-at first, whatever the order received or the spelling of created-at')
  t.same(view.events.map((event) => [event.name, event.createdAt]), [
    ['inquiry.approved', '2026-11-27T10:00:03.000Z'],
    ['inquiry.completed', '2026-11-27T10:00:02.000Z'],
    ['inquiry.created', '2026-11-27T11:00:01.000+01:00']
  ], 'created-at as sent')
  t.same(view.events.map((event) => event.deliveries.map((delivery) => [delivery.subscriber, delivery.state, delivery.skipReason])), [
    [['APPROVED', 'completed', undefined], ['CRM', 'completed', undefined], ['ERP', 'failed', undefined]],
    [['CRM', 'completed', undefined], ['APPROVED', 'skipped', 'filtered']],
    [['CRM', 'completed', undefined], ['APPROVED', 'skipped', 'filtered']]
  ], 'each event with its deliveries and their states')
  for (const event of view.events) {
    t.same(event, await eventView(app, event.id), `${event.id}: as GET /admin/events/:id shows it`)
    t.same(event.object, inquiry)
    t.equal(event.source, 'webhook')
  }
  t.match(view.events[0]!.deliveries[2], { id: `ERP.${newest}`, state: 'failed', deadLetterReason: 'exhausted', attemptsMade: 1, attempts: [{ status: 500 }] })
  for (const secret of ['"payload"', '"attributes"', '"approved"', '"body"']) t.notOk(JSON.stringify(view).includes(secret), `no ${secret} in the object view`)

  const otherView = await admin<ObjectView>(app, 'GET', `/admin/objects/${OTHER_INQUIRY}`)
  t.equal(otherView.statusCode, 200)
  t.same([otherView.body.id, otherView.body.type, otherView.body.events.map((event) => event.id)], [OTHER_INQUIRY, 'inquiry', [other]])
  const verificationView = await admin<ObjectView>(app, 'GET', `/admin/objects/${VERIFICATION}`)
  t.same([verificationView.statusCode, verificationView.body.type, verificationView.body.events.map((event) => [event.id, event.deliveries])], [200, 'verification/government-id', [[verification, []]]], 'an event routed to no one is still listed')

  // The index itself: created-at in ms as scores, kept as long as the records.
  const prefix = config.redis.layout.prefix
  t.same(await app.redis.zrange(`${prefix}:object:${INQUIRY}`, '0', '-1', 'WITHSCORES'), [
    oldest, String(Date.parse('2026-11-27T10:00:01.000Z')),
    middle, String(Date.parse('2026-11-27T10:00:02.000Z')),
    newest, String(Date.parse('2026-11-27T10:00:03.000Z'))
  ])
  const ttl = await app.redis.ttl(`${prefix}:object:${INQUIRY}`)
  t.ok(ttl > DEDUPE_TTL_SECONDS - 60 && ttl <= DEDUPE_TTL_SECONDS, `the index expires with the dedupe TTL (${ttl} s)`)
  t.same((await app.redis.keys(`${prefix}:object:*`)).sort(), [INQUIRY, OTHER_INQUIRY, VERIFICATION].map((id) => `${prefix}:object:${id}`).sort(), 'one index per object')

  // A duplicate is not indexed again.
  await postEvent(app, sent[1]!)
  t.equal(await app.redis.zcard(`${prefix}:object:${INQUIRY}`), 3)
})

t.test('an event whose record expired is left out; an object with none left is 404 OBJECT_NOT_FOUND', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, { ADMIN_TOKEN, SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: 'inquiry.*' })
  const [first, second] = [uniqueEventId(), uniqueEventId()]
  await postEvent(app, body(first, 'inquiry.created', 'created-at', '2026-11-27T10:00:00.000Z', { type: 'inquiry', id: INQUIRY }, 'created'))
  await postEvent(app, body(second, 'inquiry.approved', 'created-at', '2026-11-27T10:00:01.000Z', { type: 'inquiry', id: INQUIRY }, 'approved'))
  for (const id of [first, second]) await waitForDelivery(app, 'CRM', id, 'completed')
  t.same((await admin<ObjectView>(app, 'GET', `/admin/objects/${INQUIRY}`)).body.events.map((event) => event.id), [second, first])

  await app.redis.del(app.eventStore.keys.event(second))
  t.same((await admin<ObjectView>(app, 'GET', `/admin/objects/${INQUIRY}`)).body.events.map((event) => event.id), [first])
  await app.redis.del(app.eventStore.keys.event(first))
  t.same(await admin(app, 'GET', `/admin/objects/${INQUIRY}`), {
    statusCode: 404,
    body: { statusCode: 404, code: 'OBJECT_NOT_FOUND', error: 'Not Found', message: 'No recorded event is about this object' }
  })
})

t.test('an event whose payload names no indexable object has no object and no index', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const { app, config } = await startRelay(t, { ADMIN_TOKEN, SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' })
  const cases: [string, unknown][] = [
    ['an id with a space', { type: 'inquiry', id: 'inq bad' }],
    ['an id with a colon', { type: 'inquiry', id: 'inq:bad' }],
    ['an id too long', { type: 'inquiry', id: `inq_${'x'.repeat(130)}` }],
    ['a capitalised type', { type: 'Inquiry', id: 'inq_ok' }],
    ['no type', { id: 'inq_ok' }],
    ['a number id', { type: 'inquiry', id: 12 }],
    ['no data', undefined]
  ]
  for (const [label, data] of cases) {
    const id = uniqueEventId()
    await postEvent(app, JSON.stringify({ data: { type: 'event', id, attributes: { name: 'case.created', 'created-at': '2026-11-27T10:00:00.000Z', payload: { data } } } }))
    await waitForDelivery(app, 'CRM', id, 'completed')
    t.notOk('object' in (await eventView(app, id)), label)
  }
  t.same(await app.redis.keys(`${config.redis.layout.prefix}:object:*`), [], 'nothing indexed')
  t.equal((await admin(app, 'GET', '/admin/objects/inq_ok')).statusCode, 404)
})

t.test('an unknown object is 404, a malformed id 400, and no token 401', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, { ADMIN_TOKEN, SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' })
  const id = uniqueEventId()
  await postEvent(app, body(id, 'inquiry.approved', 'created-at', '2026-11-27T10:00:00.000Z', { type: 'inquiry', id: INQUIRY }, 'approved'))
  await waitForDelivery(app, 'CRM', id, 'completed')

  for (const unknown of ['inq_unknown', `x${'y'.repeat(127)}`, id, 'constructor', 'hasOwnProperty', 'toString']) {
    t.same(await admin(app, 'GET', `/admin/objects/${unknown}`), {
      statusCode: 404,
      body: { statusCode: 404, code: 'OBJECT_NOT_FOUND', error: 'Not Found', message: 'No recorded event is about this object' }
    }, unknown)
  }
  for (const malformed of ['inq.bad', '-inq', '_inq', 'inq%20x', 'inq:1', 'inq%3A1', `x${'y'.repeat(128)}`, 'inq_%C3%A4', '*']) {
    const { statusCode, body: answer } = await admin(app, 'GET', `/admin/objects/${malformed}`)
    t.equal(statusCode, 400, malformed)
    t.equal(answer.code, 'INVALID_REQUEST', malformed)
    t.match(answer.message, /^Invalid request: params\/objectId/, malformed)
  }
  t.equal((await admin(app, 'GET', `/admin/objects/${INQUIRY}`)).statusCode, 200, 'the object is there')
  for (const headers of [{}, { authorization: `Bearer ${ADMIN_TOKEN}x` }, { authorization: ADMIN_TOKEN }]) {
    const response = await app.inject({ method: 'GET', url: `/admin/objects/${INQUIRY}`, headers })
    t.equal(response.statusCode, 401, JSON.stringify(headers))
    t.same(response.json(), { statusCode: 401, code: 'ADMIN_UNAUTHORIZED', error: 'Unauthorized', message: new Errors.ADMIN_UNAUTHORIZED().message })
    t.notOk(response.body.includes(id), 'nothing of the object is shown')
  }
})
