import t from 'tap'
import { errors } from 'undici'
import { loadConfig } from '../../src/config/index.js'
import { classifyError, sendDelivery } from '../../src/delivery/sender.js'
import { personaEvent, SECRET, startRelay, uniqueEventId } from '../helpers/app.js'
import { history, postEvent, waitForJob } from '../helpers/delivery.js'
import { waitUntil } from '../helpers/wait-until.js'

/** Passes the configuration's URL check, but no URL parser takes port 99999: the client refuses every request. */
const UNUSABLE_URL = 'http://127.0.0.1:99999/hook'

const data = { eventId: 'evt_client', eventName: 'inquiry.approved', createdAt: '', receivedAt: new Date().toISOString(), source: 'webhook' }

t.test('errors of the request itself, raised before anything is sent, are client errors', async (t) => {
  const cases: [unknown, string][] = [
    [new errors.InvalidArgumentError('invalid persona-event-name header'), 'client'],
    [new errors.NotSupportedError('expect header not supported'), 'client'],
    [Object.assign(new TypeError('Invalid URL'), { code: 'ERR_INVALID_URL' }), 'client'],
    [new Error('fetch failed', { cause: new errors.InvalidArgumentError('x') }), 'client'],
    [new errors.SocketError('other side closed'), 'connection_reset'],
    [new errors.HeadersTimeoutError(), 'timeout']
  ]
  for (const [error, expected] of cases) t.equal(classifyError(error), expected, (error as Error).message)
})

t.test('a request the client refuses is a client error, reported at once', async (t) => {
  const config = loadConfig({ PERSONA_WEBHOOK_SECRET: SECRET, SUBSCRIBER_CRM_URL: UNUSABLE_URL, SUBSCRIBER_CRM_EVENTS: '*' })
  const result = await sendDelivery(config.subscribers[0]!, data, '{}', 1)
  t.match(result, { outcome: 'network_error', errorClass: 'client' })
  t.ok(result.durationMs < 1000, `${result.durationMs} ms`)
})

t.test('client errors are retried and dead-lettered but never count towards the breaker', async (t) => {
  const { app } = await startRelay(t, {
    SUBSCRIBER_BROKEN_URL: UNUSABLE_URL,
    SUBSCRIBER_BROKEN_EVENTS: '*',
    SUBSCRIBER_BROKEN_MAX_ATTEMPTS: '3',
    SUBSCRIBER_BROKEN_PAUSE_AFTER_FAILURES: '1'
  })
  const id = uniqueEventId()
  await postEvent(app, personaEvent(id))
  const job = await waitForJob(app, 'BROKEN', id, 'failed')
  t.equal(job.attemptsMade, 3)
  t.equal(job.failedReason, 'delivery failed: client')
  t.same((await history(app, 'BROKEN', id)).map(({ attempt, outcome, errorClass }) => [attempt, outcome, errorClass]), [
    [1, 'network_error', 'client'],
    [2, 'network_error', 'client'],
    [3, 'network_error', 'client']
  ])
  t.match(await app.delivery.controls.get('BROKEN')!.state(), { paused: false, consecutiveFailures: 0 })
})

t.test("a probe's client error does not count towards the breaker either", async (t) => {
  const { app } = await startRelay(t, {
    SUBSCRIBER_BROKEN_URL: UNUSABLE_URL,
    SUBSCRIBER_BROKEN_EVENTS: '*',
    BREAKER_PROBE_INTERVAL_SECONDS: '0.1'
  })
  const control = app.delivery.controls.get('BROKEN')!
  await control.pause('breaker')
  const id = uniqueEventId()
  await postEvent(app, personaEvent(id))
  await waitUntil('two probes of the waiting delivery', async () => (await history(app, 'BROKEN', id)).filter((record) => record.probe).length >= 2)
  t.match((await history(app, 'BROKEN', id))[0], { outcome: 'network_error', errorClass: 'client', probe: true })
  t.match(await control.state(), { paused: true, reason: 'breaker', consecutiveFailures: 0 })
})
