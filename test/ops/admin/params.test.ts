import t from 'tap'
import Value from 'typebox/value'
import { ErrorResponse } from '../../../src/errors.js'
import { ADMIN_TOKEN } from '../../helpers/admin.js'
import { personaEvent, startRelay, uniqueEventId } from '../../helpers/app.js'
import { postEvent, waitForJob } from '../../helpers/delivery.js'
import { startSubscriber } from '../../helpers/subscriber.js'

/**
 * Ids and names no route may answer with a 500: the names of BullMQ's own keys beside a queue's
 * jobs (`A.events` was one), path tricks, NUL, prototype members and lengths past every limit.
 */
const BAD = [
  'A.events', 'A.meta', 'A.id', 'A.wait', 'A.failed', 'A.stalled-check', 'A.logs',
  // Not '.': a URL's dot segment, so `/admin/deliveries/./retry` is the bulk retry.
  '..', 'A..', '.A', 'A.evt_x.y', 'A.evt_x:logs', 'A.evt_x/../meta', 'A.evt_x%2Fy', '\u0000', 'A.evt_\u0000', 'A\u0000.evt_x',
  'constructor', '__proto__', 'A.constructor', 'A.__proto__', 'hasOwnProperty', 'toString',
  'A.evt_ä', 'a.evt_x', 'A B', ' A', 'A ', '*', 'A*', 'A.evt_*',
  'A'.repeat(300), `A.evt_${'x'.repeat(129)}`, `A.evt_${'x'.repeat(600)}`, 'A'.repeat(5000)
]
/** Well formed as a subscriber name or a delivery id, but naming nothing. */
const UNKNOWN = ['CONSTRUCTOR', '__PROTO__', 'NOPE', 'A.evt_unknown', 'NOPE.evt_x', '__PROTO__.evt_x', 'CONSTRUCTOR.evt_x']

// BAD_REQUEST: a parameter longer than the router takes.
const CODES = ['INVALID_REQUEST', 'BAD_REQUEST', 'NOT_FOUND', 'EVENT_NOT_FOUND', 'DELIVERY_NOT_FOUND', 'SUBSCRIBER_NOT_FOUND']

t.test('regression (A.events answered 500): every admin route answers a bad or unknown id or name with 400 or 404 and our error body', async (t) => {
  const subscriber = await startSubscriber(() => ({ status: 500 }))
  t.teardown(() => subscriber.close())
  const { app, logs } = await startRelay(t, {
    ADMIN_TOKEN,
    SUBSCRIBER_A_URL: subscriber.url,
    SUBSCRIBER_A_EVENTS: '*',
    SUBSCRIBER_A_MAX_ATTEMPTS: '1',
    SUBSCRIBER_A_PAUSE_AFTER_FAILURES: '1000000'
  })
  // A failed delivery, so that the queue's own keys (events, meta, id, failed…) exist to be hit.
  const eventId = uniqueEventId()
  await postEvent(app, personaEvent(eventId))
  await waitForJob(app, 'A', eventId, 'failed')

  const requests = (value: string) => {
    const encoded = encodeURIComponent(value)
    return [
      { method: 'POST' as const, url: `/admin/deliveries/${encoded}/retry` },
      { method: 'GET' as const, url: `/admin/events/${encoded}` },
      { method: 'GET' as const, url: `/admin/deliveries?subscriber=${encoded}` },
      { method: 'POST' as const, url: '/admin/deliveries/retry', payload: { subscriber: value } },
      { method: 'POST' as const, url: `/admin/subscribers/${encoded}/pause` },
      { method: 'POST' as const, url: `/admin/subscribers/${encoded}/resume` }
    ]
  }
  for (const value of [...BAD, ...UNKNOWN]) {
    for (const request of requests(value)) {
      const what = `${request.method} ${request.url.slice(0, 80)}${request.payload ? ` ${JSON.stringify(request.payload).slice(0, 40)}` : ''}`
      const response = await app.inject({ ...request, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
      const body = response.json()
      t.ok(response.statusCode === 400 || response.statusCode === 404, `${what}: ${response.statusCode}`)
      t.ok(Value.Check(ErrorResponse, body) && CODES.includes(body.code), `${what}: ${body.code}`)
    }
  }
  t.equal(logs.lines.filter((line) => line.msg === 'request failed').length, 0, 'no request failed')
  t.equal(await app.delivery.queues.get('A')!.getJobState(eventId), 'failed', 'nothing was retried')
  t.equal(await app.delivery.controls.get('A')!.state().then((state) => state.paused), false, 'nor paused')
})

t.test('a malformed delivery id is 400 INVALID_REQUEST; a well-formed one that names nothing 404 DELIVERY_NOT_FOUND', async (t) => {
  const { app } = await startRelay(t, { ADMIN_TOKEN, SUBSCRIBER_A_URL: 'http://127.0.0.1:9/hook', SUBSCRIBER_A_EVENTS: '*' })
  const retry = (id: string) =>
    app.inject({ method: 'POST', url: `/admin/deliveries/${encodeURIComponent(id)}/retry`, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
  for (const id of ['A.events', 'A.meta', 'CRM', 'evt_x', 'a.evt_x', 'A.evt_x.y', 'A.__proto__']) {
    const response = await retry(id)
    t.equal(response.statusCode, 400, id)
    t.match(response.json(), { code: 'INVALID_REQUEST', message: /deliveryId/ }, id)
    t.notMatch(response.json().message, id, `${id}: the message does not echo the id`)
  }
  for (const id of ['A.evt_unknown', 'B.evt_x', `A.evt_${'x'.repeat(128)}`]) {
    const response = await retry(id)
    t.equal(response.statusCode, 404, id)
    t.match(response.json(), { code: 'DELIVERY_NOT_FOUND' }, id)
  }
})
