import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import { once } from 'node:events'
import type { App } from '../../src/app.js'
import { getDelivery } from '../../src/delivery/deliveries.js'
import { EventBodies } from '../../src/store/event-bodies.js'
import type { AttemptRecord, DeliveryView } from '../../src/delivery/types.js'
import { signedHeaders, type LogCapture, type TestRelay } from './app.js'
import { FIXTURE, FIXTURE_ID } from './fixtures.js'
import { waitUntil } from './wait-until.js'


/** The fixture with non-ASCII text, escapes, odd whitespace and numbers that re-serialising would change. */
export function unusualBody(id: string): string {
  return FIXTURE
    .replace(FIXTURE_ID, id)
    .replace('"ALEX"', '"Zoë Ångström-Łukasiewicz 🚀 日本語 \\u00e9\\t"')
    .replace('"status": "approved"', '"zz-last-first": {"b": 1.50, "a": 1e2},\r\n\t\t "status" :\t"approved"  ')
    .concat('\r\n\t \n')
}

/** Posts a signed event to the relay's intake; anything but a 200 fails the test there. */
export async function postEvent(app: App, body: string): Promise<void> {
  const response = await app.inject({ method: 'POST', url: '/webhooks/persona', headers: signedHeaders(body), payload: body })
  if (response.statusCode !== 200) throw new Error(`intake answered ${response.statusCode}: ${response.body}`)
}

/** Waits for a delivery's queue job to reach a BullMQ state; a completed delivery has no job (waitForDelivery). */
export async function waitForJob(app: App, subscriber: string, eventId: string, state: 'waiting' | 'delayed' | 'active' | 'failed') {
  const queue = app.delivery.queues.get(subscriber)!
  await waitUntil(`job ${eventId} of ${subscriber} to be ${state}`, async () => (await queue.getJobState(eventId)) === state)
  return (await queue.getJob(eventId))!
}

/** A delivery as the admin API shows it: its job, or its record in the completion store. */
export async function deliveryView(app: App, subscriber: string, eventId: string): Promise<DeliveryView | undefined> {
  return await getDelivery(app.redis, app.delivery.queues.get(subscriber)!, app.delivery.completions, subscriber, eventId)
}

/** Waits for a delivery to reach `state` as the admin API shows it. */
export async function waitForDelivery(app: App, subscriber: string, eventId: string, state: DeliveryView['state']): Promise<DeliveryView> {
  return await waitUntil(`delivery ${eventId} of ${subscriber} to be ${state}`, async () => {
    const view = await deliveryView(app, subscriber, eventId)
    return view?.state === state ? view : undefined
  })
}

/** A delivery's attempt history as the admin API shows it. */
export async function history(app: App, subscriber: string, eventId: string): Promise<AttemptRecord[]> {
  return (await deliveryView(app, subscriber, eventId))?.attempts ?? []
}

/** The event's stored body (shared by its deliveries), or null once no subscriber needs it. */
export async function storedBody(app: App, eventId: string): Promise<string | null> {
  return await app.redis.get(app.eventStore.keys.body(eventId))
}

export function deliveryAttempts(logs: LogCapture, subscriber: string, eventId: string) {
  return logs.lines.filter((line) => line.msg === 'delivery attempt' && line.subscriber === subscriber && line.eventId === eventId)
}

export interface PlainServer {
  server: Server
  received: { url: string; headers: IncomingHttpHeaders }[]
  port: number
}

/** A server on a chosen port (startSubscriber always takes a fresh one) that answers by path. */
export async function listenOn(
  port: number,
  answer: (url: string) => { status: number; headers?: Record<string, string> }
): Promise<PlainServer> {
  const received: PlainServer['received'] = []
  const server = createServer((req, res) => {
    received.push({ url: req.url ?? '', headers: req.headers })
    req.resume()
    req.on('end', () => {
      const { status, headers } = answer(req.url ?? '')
      res.writeHead(status, headers).end()
    })
  })
  server.listen(port, '127.0.0.1')
  await once(server, 'listening')
  return { server, received, port: (server.address() as { port: number }).port }
}

export async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections()
  server.close()
  await once(server, 'close')
}

/**
 * What an instance that delivered a queued delivery and died before its job completed leaves: the
 * completion written as the relay writes it (the body released with it), the job still there.
 */
export async function completedBehindTheJob(relay: Pick<TestRelay, 'app' | 'config'>, subscriber: string, eventId: string): Promise<void> {
  const { app, config } = relay
  const finishedAt = new Date().toISOString()
  await app.delivery.completions.write([{
    subscriber,
    heldBody: true,
    record: { eventId, eventName: 'inquiry.approved', queuedAt: finishedAt, finishedAt, maxAttempts: 1, attempts: [] }
  }], new EventBodies(app.redis, config.redis.layout, config.dedupeTtlSeconds))
}
