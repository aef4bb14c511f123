import t from 'tap'
import { personaEvent, startRelay, uniqueEventId } from '../../helpers/app.js'
import { ADMIN_TOKEN, admin, eventView } from '../../helpers/admin.js'
import { closeServer, listenOn, postEvent, storedBody, waitForDelivery, waitForJob } from '../../helpers/delivery.js'
import { startSubscriber } from '../../helpers/subscriber.js'
import { waitUntil } from '../../helpers/wait-until.js'

const NEVER_PAUSE = '1000000'

function ms(iso: string | undefined): number {
  const time = Date.parse(iso ?? '')
  if (Number.isNaN(time)) throw new Error(`not a time: ${iso}`)
  return time
}

t.test('a delivery answered 500 then 200 is completed, with both attempts and no failure fields', async (t) => {
  const subscriber = await startSubscriber((_request, n) => (n === 1 ? { status: 500, body: 'boom' } : { status: 200, body: 'thanks' }))
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, {
    ADMIN_TOKEN,
    SUBSCRIBER_CRM_URL: subscriber.url,
    SUBSCRIBER_CRM_EVENTS: 'inquiry.*',
    SUBSCRIBER_CRM_MAX_ATTEMPTS: '4'
  })
  const id = uniqueEventId()
  const before = Date.now()
  await postEvent(app, personaEvent(id))
  await waitForDelivery(app, 'CRM', id, 'completed')

  const view = await eventView(app, id)
  t.match(view, {
    id,
    name: 'inquiry.approved',
    createdAt: '2026-11-27T10:00:00.000Z',
    source: 'webhook',
    deliveries: [{
      id: `CRM.${id}`,
      subscriber: 'CRM',
      eventId: id,
      eventName: 'inquiry.approved',
      state: 'completed',
      attemptsMade: 2,
      maxAttempts: 4,
      attempts: [
        { attempt: 1, outcome: 'http_error', status: 500, response: 'boom', durationMs: Number },
        { attempt: 2, outcome: 'success', status: 200, response: 'thanks', durationMs: Number }
      ]
    }]
  })
  t.equal(view.deliveries.length, 1)
  const [delivery] = view.deliveries
  for (const field of ['failedReason', 'deadLetterReason', 'nextAttemptAt'] as const) t.notOk(field in delivery!, `no ${field}`)
  const times = [before, ms(view.receivedAt), ms(delivery!.queuedAt), ms(delivery!.attempts[0]!.at), ms(delivery!.attempts[1]!.at), ms(delivery!.finishedAt)]
  t.same([...times].sort((a, b) => a - b), times, 'received, queued, attempted, attempted again, finished: in that order')
  t.ok(times[5]! <= Date.now())
})

t.test('a delivery that spent every attempt is failed and exhausted, and the view holds no body or personal data', async (t) => {
  const subscriber = await startSubscriber(() => ({ status: 503, body: 'down for maintenance' }))
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, {
    ADMIN_TOKEN,
    SUBSCRIBER_CRM_URL: subscriber.url,
    SUBSCRIBER_CRM_EVENTS: '*',
    SUBSCRIBER_CRM_MAX_ATTEMPTS: '3',
    SUBSCRIBER_CRM_PAUSE_AFTER_FAILURES: NEVER_PAUSE
  })
  const id = uniqueEventId()
  const body = personaEvent(id, 'inquiry.approved', {
    payload: { data: { type: 'inquiry', id: 'inq_Q1w2e3', attributes: { 'name-first': 'Zoë', 'name-last': 'Ångström-Marker', 'email-address': 'zoe.marker@example.com', birthdate: '1990-04-01' } } }
  })
  await postEvent(app, body)
  const job = await waitForJob(app, 'CRM', id, 'failed')
  t.equal(await storedBody(app, id), body, 'the dead letter keeps its body for a replay')

  const response = await app.inject({ method: 'GET', url: `/admin/events/${id}`, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
  t.equal(response.statusCode, 200)
  t.match(response.json(), {
    deliveries: [{
      state: 'failed',
      attemptsMade: 3,
      maxAttempts: 3,
      failedReason: 'subscriber answered HTTP 503',
      deadLetterReason: 'exhausted',
      finishedAt: String,
      attempts: [
        { attempt: 1, outcome: 'http_error', status: 503, response: 'down for maintenance' },
        { attempt: 2, outcome: 'http_error', status: 503 },
        { attempt: 3, outcome: 'http_error', status: 503 }
      ]
    }]
  })
  t.same(JSON.parse(response.body).object, { type: 'inquiry', id: 'inq_Q1w2e3' }, 'the object id is metadata, and shown')
  for (const secret of ['payload', 'Zoë', 'Ångström', 'Marker', 'zoe.marker@example.com', '1990-04-01', '"body"']) {
    t.notOk(response.body.includes(secret), `no ${secret} in the event view`)
  }
})

t.test('a delivery answered 410 is failed as gone after one attempt, whatever attempts were left', async (t) => {
  const subscriber = await startSubscriber(() => ({ status: 410, body: 'endpoint retired' }))
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, {
    ADMIN_TOKEN,
    SUBSCRIBER_CRM_URL: subscriber.url,
    SUBSCRIBER_CRM_EVENTS: '*',
    SUBSCRIBER_CRM_MAX_ATTEMPTS: '5'
  })
  const id = uniqueEventId()
  await postEvent(app, personaEvent(id))
  await waitForJob(app, 'CRM', id, 'failed')

  t.match((await eventView(app, id)).deliveries, [{
    id: `CRM.${id}`,
    state: 'failed',
    attemptsMade: 1,
    maxAttempts: 5,
    deadLetterReason: 'gone',
    attempts: [{ attempt: 1, outcome: 'http_error', status: 410, response: 'endpoint retired' }]
  }])
  t.equal(subscriber.received.length, 1)
})

t.test('an event routed to two subscribers shows one delivery per routed subscriber and none for the others', async (t) => {
  const ok = await startSubscriber()
  const gone = await startSubscriber(() => ({ status: 410 }))
  t.teardown(() => Promise.all([ok.close(), gone.close()]))
  const { app } = await startRelay(t, {
    ADMIN_TOKEN,
    SUBSCRIBER_ALL_URL: ok.url,
    SUBSCRIBER_ALL_EVENTS: '*',
    SUBSCRIBER_INQUIRIES_URL: gone.url,
    SUBSCRIBER_INQUIRIES_EVENTS: 'inquiry.*',
    SUBSCRIBER_REPORTS_URL: ok.url,
    SUBSCRIBER_REPORTS_EVENTS: 'report.*'
  })
  const id = uniqueEventId()
  await postEvent(app, personaEvent(id, 'inquiry.completed'))
  await Promise.all([waitForDelivery(app, 'ALL', id, 'completed'), waitForJob(app, 'INQUIRIES', id, 'failed')])

  const view = await eventView(app, id)
  t.same(view.deliveries.map((delivery) => [delivery.id, delivery.state, delivery.deadLetterReason]), [
    [`ALL.${id}`, 'completed', undefined],
    [`INQUIRIES.${id}`, 'failed', 'gone']
  ])
  t.equal(view.name, 'inquiry.completed')
})

t.test('an event routed to no subscriber is shown with no deliveries', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, { ADMIN_TOKEN, SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: 'inquiry.*' })
  const id = uniqueEventId()
  await postEvent(app, personaEvent(id, 'account.created'))

  const view = await eventView(app, id)
  t.same(view, {
    id, name: 'account.created', createdAt: '2026-11-27T10:00:00.000Z', receivedAt: view.receivedAt, source: 'webhook', object: { type: 'inquiry', id: 'inq_test' }, deliveries: []
  })
  t.ok(ms(view.receivedAt) <= Date.now())
  t.equal(subscriber.received.length, 0)
})

t.test('a delivery waiting for a retry shows when it is due, counted from its last attempt', async (t) => {
  // Retry-After is honoured exactly, so the due time is known: 1 s after the first attempt, then 120 s.
  let n = 0
  const subscriber = await listenOn(0, () => {
    n += 1
    return { status: 503, headers: { 'retry-after': n === 1 ? '1' : '120' } }
  })
  t.teardown(() => closeServer(subscriber.server))
  const { app } = await startRelay(t, {
    ADMIN_TOKEN,
    SUBSCRIBER_CRM_URL: `http://127.0.0.1:${subscriber.port}/hook`,
    SUBSCRIBER_CRM_EVENTS: '*',
    SUBSCRIBER_CRM_MAX_ATTEMPTS: '3'
  })
  const id = uniqueEventId()
  await postEvent(app, personaEvent(id))
  const view = await waitUntil('the second attempt to be recorded', async () => {
    const current = await eventView(app, id)
    return current.deliveries[0]?.attempts.length === 2 && current.deliveries[0].state === 'delayed' && current
  }, 5000)

  const [delivery] = view.deliveries
  const lastAttemptAt = ms(delivery!.attempts[1]!.at)
  const dueIn = ms(delivery!.nextAttemptAt) - lastAttemptAt
  t.ok(dueIn >= 120_000 && dueIn < 121_000, `due 120 s after the second attempt started (${dueIn} ms)`)
  t.ok(ms(delivery!.nextAttemptAt) - ms(delivery!.queuedAt) > 121_000, 'not 120 s after it was first queued')
  t.match(delivery, { state: 'delayed', attemptsMade: 2, maxAttempts: 3 })
  t.notOk('finishedAt' in delivery!)
})

t.test('a delivery whose history is gone shows as unknown; a dead letter outlives its event record', async (t) => {
  const ok = await startSubscriber()
  const failing = await startSubscriber(() => ({ status: 500 }))
  t.teardown(() => Promise.all([ok.close(), failing.close()]))
  const { app } = await startRelay(t, {
    ADMIN_TOKEN,
    SUBSCRIBER_CRM_URL: ok.url,
    SUBSCRIBER_CRM_EVENTS: '*',
    SUBSCRIBER_ERP_URL: failing.url,
    SUBSCRIBER_ERP_EVENTS: '*',
    SUBSCRIBER_ERP_MAX_ATTEMPTS: '1'
  })
  const id = uniqueEventId()
  await postEvent(app, personaEvent(id))
  await Promise.all([waitForDelivery(app, 'CRM', id, 'completed'), waitForJob(app, 'ERP', id, 'failed')])

  // Completed, its only history is its record: the retention sweep removes it, as it does
  // once DELIVERY_HISTORY_HOURS have passed.
  t.equal(await app.delivery.completions.sweep('CRM', Date.now() + 1), 1)
  t.match((await eventView(app, id)).deliveries, [
    { id: `CRM.${id}`, state: 'unknown', attemptsMade: 0, attempts: [] },
    { id: `ERP.${id}`, state: 'failed', deadLetterReason: 'exhausted' }
  ])

  await app.redis.del(app.eventStore.keys.event(id))
  const view = await eventView(app, id)
  t.match(view, { id, name: 'inquiry.approved', deliveries: [{ id: `ERP.${id}`, state: 'failed' }] })
  t.equal(view.deliveries.length, 1, 'without the record, only deliveries that still exist are shown')

  await app.delivery.queues.get('ERP')!.remove(id)
  const { statusCode, body } = await admin(app, 'GET', `/admin/events/${id}`)
  t.equal(statusCode, 404)
  t.equal(body.code, 'EVENT_NOT_FOUND')
})

t.test('a delivery to a subscriber no longer configured shows as unknown', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const before = await startRelay(t, {
    ADMIN_TOKEN,
    SUBSCRIBER_CRM_URL: subscriber.url,
    SUBSCRIBER_CRM_EVENTS: '*',
    SUBSCRIBER_ERP_URL: subscriber.url,
    SUBSCRIBER_ERP_EVENTS: '*'
  })
  const id = uniqueEventId()
  await postEvent(before.app, personaEvent(id))
  await Promise.all([waitForDelivery(before.app, 'CRM', id, 'completed'), waitForDelivery(before.app, 'ERP', id, 'completed')])

  const { app } = await startRelay(t, { ADMIN_TOKEN, SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' }, before.redis)
  t.match((await eventView(app, id)).deliveries, [
    { id: `CRM.${id}`, state: 'completed' },
    { id: `ERP.${id}`, subscriber: 'ERP', eventName: 'inquiry.approved', state: 'unknown', attempts: [] }
  ])
})

t.test('an unknown event id is 404 EVENT_NOT_FOUND and a malformed one 400 INVALID_REQUEST', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, { ADMIN_TOKEN, SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' })

  const unknown = await admin(app, 'GET', `/admin/events/${uniqueEventId()}`)
  t.same(unknown, { statusCode: 404, body: { statusCode: 404, code: 'EVENT_NOT_FOUND', error: 'Not Found', message: 'No such event is recorded' } })
  for (const malformed of ['inq_123', 'evt_', 'evt_a.b', 'evt_%20x', 'EVT_abc', `evt_${'a'.repeat(90)}!`]) {
    const { statusCode, body } = await admin(app, 'GET', `/admin/events/${malformed}`)
    t.equal(statusCode, 400, malformed)
    t.equal(body.code, 'INVALID_REQUEST')
    t.match(body.message, /^Invalid request: params\/eventId/)
  }
})

t.test('an event with the longest id the intake accepts can be looked up', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, { ADMIN_TOKEN, SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' })
  const id = `evt_${'x'.repeat(128)}`
  await postEvent(app, personaEvent(id))
  await waitForDelivery(app, 'CRM', id, 'completed')
  t.equal((await admin(app, 'GET', `/admin/events/${id}`)).statusCode, 200)
  t.equal((await admin(app, 'GET', `/admin/events/${id}x`)).statusCode, 400)
})
