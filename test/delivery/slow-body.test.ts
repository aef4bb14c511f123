import { createServer, type ServerResponse } from 'node:http'
import { once } from 'node:events'
import t from 'tap'
import { loadConfig } from '../../src/config/index.js'
import { sendDelivery } from '../../src/delivery/sender.js'
import { personaEvent, SECRET, startRelay, uniqueEventId } from '../helpers/app.js'
import { closeServer, postEvent, waitForDelivery } from '../helpers/delivery.js'
import { waitUntil } from '../helpers/wait-until.js'

const SLOW_BYTES = 10

/** Sends the status and headers at once, then one byte of body a second for SLOW_BYTES seconds. */
async function startSlowBodySubscriber(status: number) {
  const closedAt: number[] = []
  const server = createServer((req, res: ServerResponse) => {
    req.resume()
    req.on('end', () => {
      res.writeHead(status, { 'content-type': 'text/plain' })
      res.flushHeaders()
      let sent = 0
      const drip = setInterval(() => {
        sent += 1
        if (sent < SLOW_BYTES) res.write('.')
        else res.end('.')
      }, 1000)
      res.on('close', () => {
        clearInterval(drip)
        closedAt.push(Date.now())
      })
      res.write('.')
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  return { server, url: `http://127.0.0.1:${port}/hook`, closedAt }
}

function subscriberAt(url: string) {
  const config = loadConfig({ PERSONA_WEBHOOK_SECRET: SECRET, SUBSCRIBER_CRM_URL: url, SUBSCRIBER_CRM_EVENTS: '*', SUBSCRIBER_CRM_TIMEOUT_MS: '2000' })
  return config.subscribers[0]!
}

const data = { eventId: 'evt_slow', eventName: 'inquiry.approved', createdAt: '', receivedAt: new Date().toISOString(), source: 'webhook' }

t.test('a 2xx whose body trickles in is a success, decided by the status line, and the connection is let go', async (t) => {
  const slow = await startSlowBodySubscriber(200)
  t.teardown(() => closeServer(slow.server))
  const result = await sendDelivery(subscriberAt(slow.url), data, '{}', 1)
  const returnedAt = Date.now()
  t.match(result, { outcome: 'success', status: 200, responseExcerpt: '.' })
  t.notOk(result.errorClass)
  t.ok(result.durationMs < 1500, `took ${result.durationMs} ms, against ${SLOW_BYTES} s for the whole body`)
  const [closedAt] = await waitUntil('the subscriber to see its answer closed', () => slow.closedAt.length > 0 && slow.closedAt, 2000)
  t.ok(closedAt! - returnedAt < 500, 'the unread body was dropped, closing its connection')
})

t.test('a non-2xx whose body trickles in is an http_error with its status, not a timeout', async (t) => {
  const slow = await startSlowBodySubscriber(503)
  t.teardown(() => closeServer(slow.server))
  const result = await sendDelivery(subscriberAt(slow.url), data, '{}', 1)
  t.match(result, { outcome: 'http_error', status: 503, responseExcerpt: '.' })
  t.notOk(result.errorClass)
})

t.test('regression: a subscriber that answers 200 and then sends its body slowly gets the event once and the delivery completes', async (t) => {
  const slow = await startSlowBodySubscriber(200)
  let requests = 0
  slow.server.on('request', () => (requests += 1))
  t.teardown(() => closeServer(slow.server))
  const { app } = await startRelay(t, { SUBSCRIBER_SLOW_URL: slow.url, SUBSCRIBER_SLOW_EVENTS: '*', SUBSCRIBER_SLOW_TIMEOUT_MS: '1000' })
  const id = uniqueEventId()
  await postEvent(app, personaEvent(id))
  const delivery = await waitForDelivery(app, 'SLOW', id, 'completed')
  t.match(delivery.attempts, [{ attempt: 1, outcome: 'success', status: 200 }])
  t.equal(delivery.attempts.length, 1)
  t.equal(requests, 1, 'exactly one request')
  t.match(await app.delivery.controls.get('SLOW')!.state(), { paused: false, consecutiveFailures: 0 })
})
