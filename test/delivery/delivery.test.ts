import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { IncomingHttpHeaders } from 'node:http'
import t from 'tap'
import { Webhook } from 'standardwebhooks'
import { personaEvent, startRelay, uniqueEventId } from '../helpers/app.js'
import { deliveryView, postEvent, storedBody, unusualBody, waitForDelivery } from '../helpers/delivery.js'
import { freePort } from '../helpers/redis.js'
import { startSubscriber } from '../helpers/subscriber.js'
import { waitUntil } from '../helpers/wait-until.js'

const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }

function secret(): string {
  return `whsec_${randomBytes(24).toString('base64')}`
}

function signatureHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  return {
    'webhook-id': String(headers['webhook-id']),
    'webhook-timestamp': String(headers['webhook-timestamp']),
    'webhook-signature': String(headers['webhook-signature'])
  }
}

t.test('a subscriber receives the exact bytes with every delivery header and no signature without a secret', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: 'inquiry.approved' })
  const id = uniqueEventId()
  const body = unusualBody(id)
  t.ok(body.includes('日本語') && body.includes('"a": 1e2') && body.endsWith('\r\n\t \n'), 'the body has what a re-serialisation would lose')
  await postEvent(app, body)

  const [request] = await subscriber.waitFor(1)
  t.equal(request!.method, 'POST')
  t.equal(request!.url, '/hook')
  t.ok(request!.body.equals(Buffer.from(body, 'utf8')), 'body is byte for byte the body Persona sent')
  const headers = request!.headers
  t.equal(headers['content-type'], 'application/json')
  t.equal(headers['webhook-id'], id)
  const timestamp = Number(headers['webhook-timestamp'])
  t.ok(Number.isInteger(timestamp) && Math.abs(timestamp - Date.now() / 1000) < 5, `webhook-timestamp ${headers['webhook-timestamp']} is now, in seconds`)
  t.equal(headers['persona-event-name'], 'inquiry.approved')
  t.equal(headers['persona-event-created-at'], '2026-03-02T14:05:11.482Z')
  t.equal(headers['persona-relay-attempt'], '1')
  t.equal(headers['user-agent'], `persona-relay/${manifest.version}`)
  t.equal(headers['persona-relay-source'], 'webhook')
  t.notOk('webhook-signature' in headers, 'no webhook-signature without a secret')

  const delivery = await waitForDelivery(app, 'CRM', id, 'completed')
  t.equal(await storedBody(app, id), null, 'once delivered, the body is no longer kept')
  t.equal(delivery.eventId, id)
  t.equal(delivery.eventName, 'inquiry.approved')
  t.match(delivery.attempts.at(-1), { attempt: 1, outcome: 'success', status: 200 })
})

t.test('webhook-signature verifies with the standardwebhooks library under one secret and under each of two', async (t) => {
  const one = await startSubscriber()
  const two = await startSubscriber()
  t.teardown(() => Promise.all([one.close(), two.close()]))
  const [single, first, second] = [secret(), secret(), secret()]
  const { app } = await startRelay(t, {
    SUBSCRIBER_ONE_URL: one.url,
    SUBSCRIBER_ONE_EVENTS: '*',
    SUBSCRIBER_ONE_SECRET: single,
    SUBSCRIBER_TWO_URL: two.url,
    SUBSCRIBER_TWO_EVENTS: '*',
    SUBSCRIBER_TWO_SECRET: ` ${first} , ${second}`
  })
  const id = uniqueEventId()
  const body = unusualBody(id)
  await postEvent(app, body)

  const [toOne] = await one.waitFor(1)
  const [toTwo] = await two.waitFor(1)
  t.ok(toOne!.body.equals(Buffer.from(body)), 'signed delivery carries the exact bytes')
  t.ok(toTwo!.body.equals(Buffer.from(body)))
  t.same(new Webhook(single).verify(toOne!.body, signatureHeaders(toOne!.headers)), JSON.parse(body))
  t.same(new Webhook(first).verify(toTwo!.body, signatureHeaders(toTwo!.headers)), JSON.parse(body))
  t.same(new Webhook(second).verify(toTwo!.body, signatureHeaders(toTwo!.headers)), JSON.parse(body))
  t.equal(String(toTwo!.headers['webhook-signature']).split(' ').length, 2, 'one signature per secret, space-separated')
  t.throws(() => new Webhook(secret()).verify(toOne!.body, signatureHeaders(toOne!.headers)), { name: 'WebhookVerificationError' })
  t.throws(() => new Webhook(single).verify(Buffer.from(body.replace('Zoë', 'Zoe')), signatureHeaders(toOne!.headers)), {
    name: 'WebhookVerificationError'
  })
})

t.test('an event goes only to the subscribers whose patterns match, each through its own queue', async (t) => {
  const subscribers = {
    EXACT: await startSubscriber(),
    INQUIRY: await startSubscriber(),
    REPORT: await startSubscriber(),
    ALL: await startSubscriber(),
    NONE: await startSubscriber()
  }
  t.teardown(() => Promise.all(Object.values(subscribers).map((subscriber) => subscriber.close())))
  const { app } = await startRelay(t, {
    SUBSCRIBER_EXACT_URL: subscribers.EXACT.url,
    SUBSCRIBER_EXACT_EVENTS: 'inquiry.approved',
    SUBSCRIBER_INQUIRY_URL: subscribers.INQUIRY.url,
    SUBSCRIBER_INQUIRY_EVENTS: 'inquiry.*',
    SUBSCRIBER_REPORT_URL: subscribers.REPORT.url,
    SUBSCRIBER_REPORT_EVENTS: 'report/*',
    SUBSCRIBER_ALL_URL: subscribers.ALL.url,
    SUBSCRIBER_ALL_EVENTS: '*',
    SUBSCRIBER_NONE_URL: subscribers.NONE.url,
    SUBSCRIBER_NONE_EVENTS: 'inquiry.approved.extra, transaction.*'
  })
  t.same(
    [...app.delivery.queues.entries()].map(([name, queue]) => [name, queue.name]),
    [['ALL', 'delivery-ALL'], ['EXACT', 'delivery-EXACT'], ['INQUIRY', 'delivery-INQUIRY'], ['NONE', 'delivery-NONE'], ['REPORT', 'delivery-REPORT']]
  )

  const events = {
    approved: { id: uniqueEventId(), name: 'inquiry.approved' },
    declined: { id: uniqueEventId(), name: 'inquiry.declined' },
    report: { id: uniqueEventId(), name: 'report/watchlist.matched' },
    verification: { id: uniqueEventId(), name: 'verification.passed' },
    lookalike: { id: uniqueEventId(), name: 'inquiryXapproved' }
  }
  for (const { id, name } of Object.values(events)) await postEvent(app, personaEvent(id, name))
  const expected: Record<keyof typeof subscribers, string[]> = {
    EXACT: [events.approved.id],
    INQUIRY: [events.approved.id, events.declined.id],
    REPORT: [events.report.id],
    ALL: Object.values(events).map((event) => event.id),
    NONE: []
  }

  // An entry leaves the stream once each of its deliveries was made at once or queued, so by then
  // every routed subscriber has a delivery, completed or in its queue.
  const intake = app.eventStore.keys.intake(0)
  await waitUntil('the intake stream to be fanned out', async () => (await app.redis.xlen(intake)) === 0)
  for (const [name, ids] of Object.entries(expected)) {
    for (const { id } of Object.values(events)) {
      const delivery = await deliveryView(app, name, id)
      t.equal(delivery !== undefined, ids.includes(id), `${name} ${ids.includes(id) ? 'has a delivery' : 'has no delivery'} of ${id}`)
    }
    const received = await subscribers[name as keyof typeof subscribers].waitFor(ids.length)
    t.same(received.map((request) => request.headers['webhook-id']).sort(), [...ids].sort(), `${name} got exactly its events`)
  }
})

t.test('a slow or dead subscriber does not delay another', async (t) => {
  const slow = await startSubscriber(() => ({ status: 200, delayMs: 1500 }))
  const fast = await startSubscriber()
  t.teardown(() => Promise.all([slow.close(), fast.close()]))
  const deadPort = await freePort()
  const { app } = await startRelay(t, {
    SUBSCRIBER_SLOW_URL: slow.url,
    SUBSCRIBER_SLOW_EVENTS: '*',
    SUBSCRIBER_SLOW_CONCURRENCY: '1',
    SUBSCRIBER_DEAD_URL: `http://127.0.0.1:${deadPort}/hook`,
    SUBSCRIBER_DEAD_EVENTS: '*',
    SUBSCRIBER_DEAD_CONCURRENCY: '1',
    SUBSCRIBER_DEAD_RETRY_SCHEDULE: '0.01',
    SUBSCRIBER_DEAD_MAX_ATTEMPTS: '1000',
    SUBSCRIBER_FAST_URL: fast.url,
    SUBSCRIBER_FAST_EVENTS: '*',
    SUBSCRIBER_FAST_CONCURRENCY: '1'
  })
  const ids = [uniqueEventId(), uniqueEventId(), uniqueEventId()]
  for (const id of ids) await postEvent(app, personaEvent(id))

  const toFast = await fast.waitFor(3)
  const [firstToSlow] = await slow.waitFor(1)
  const slowAnswersAt = firstToSlow!.at + 1500
  t.ok(toFast[2]!.at < slowAnswersAt, 'the fast subscriber had all three before the slow one answered its first')
  t.equal(slow.received.filter((request) => request.at <= toFast[2]!.at).length, 1, 'meanwhile the slow one had one')
  for (const id of ids) await waitForDelivery(app, 'FAST', id, 'completed')
})
