import t from 'tap'
import { Agent, type Dispatcher } from 'undici'
import { loadConfig } from '../../src/config/index.js'
import { sendDelivery } from '../../src/delivery/sender.js'
import { SECRET } from '../helpers/app.js'
import { startSubscriber } from '../helpers/subscriber.js'

function subscriberAt(url: string, timeoutMs: number) {
  const config = loadConfig({ PERSONA_WEBHOOK_SECRET: SECRET, SUBSCRIBER_CRM_URL: url, SUBSCRIBER_CRM_EVENTS: '*', SUBSCRIBER_CRM_TIMEOUT_MS: String(timeoutMs) })
  return config.subscribers[0]!
}

const data = { eventId: 'evt_sender', eventName: 'inquiry.approved', createdAt: '', receivedAt: new Date().toISOString(), source: 'webhook' }
/** Remembers the abort signal of each request it dispatches. */
class SignalCapture extends Agent {
  readonly signals: AbortSignal[] = []
  override dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    this.signals.push((options as { signal?: AbortSignal }).signal!)
    return super.dispatch(options, handler)
  }
}

t.test('an answered attempt leaves no timer that would fire later: under load, thousands would wait out their timeout', async (t) => {
  const subscriber = await startSubscriber()
  const dispatcher = new SignalCapture()
  t.teardown(() => Promise.all([subscriber.close(), dispatcher.close()]))
  const result = await sendDelivery(subscriberAt(subscriber.url, 100), data, '{}', 1, { dispatcher })
  t.equal(result.outcome, 'success')
  await new Promise((resolve) => setTimeout(resolve, 250))
  t.equal(dispatcher.signals.length, 1)
  t.equal(dispatcher.signals[0]!.aborted, false, 'the timeout was cleared with the attempt')
})

t.test('an attempt that outlasts its timeout is cut off and reported as a timeout', async (t) => {
  const subscriber = await startSubscriber(() => ({ status: 200, delayMs: 2000 }))
  t.teardown(() => subscriber.close())
  const result = await sendDelivery(subscriberAt(subscriber.url, 100), data, '{}', 1)
  t.match(result, { outcome: 'timeout', errorClass: 'timeout' })
  t.ok(result.durationMs < 1000, `gave up after ${result.durationMs} ms`)
})
