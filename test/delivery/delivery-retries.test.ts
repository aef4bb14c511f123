import t from 'tap'
import { personaEvent, startRelay, uniqueEventId } from '../helpers/app.js'
import { closeServer, deliveryAttempts, listenOn, postEvent, storedBody, unusualBody, waitForDelivery, waitForJob } from '../helpers/delivery.js'
import { freePort } from '../helpers/redis.js'
import { startSubscriber } from '../helpers/subscriber.js'
import { waitUntil } from '../helpers/wait-until.js'

t.test('a 500 is retried with the next attempt number, the same webhook-id and the same bytes', async (t) => {
  const subscriber = await startSubscriber((_request, n) => ({ status: n === 1 ? 500 : 204, body: 'boom' }))
  t.teardown(() => subscriber.close())
  const { app, logs } = await startRelay(t, { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' })
  const id = uniqueEventId()
  const body = unusualBody(id)
  await postEvent(app, body)

  const [first, second] = await subscriber.waitFor(2)
  t.equal(first!.headers['persona-relay-attempt'], '1')
  t.equal(second!.headers['persona-relay-attempt'], '2')
  t.equal(second!.headers['webhook-id'], id)
  t.equal(first!.headers['webhook-id'], id)
  t.ok(second!.body.equals(first!.body) && second!.body.equals(Buffer.from(body)), 'the retry carries the same bytes')
  const job = await waitForDelivery(app, 'CRM', id, 'completed')
  t.equal(job.attemptsMade, 2)
  t.equal(await storedBody(app, id), null, 'delivered: the body is gone')
  t.match(deliveryAttempts(logs, 'CRM', id), [
    { attempt: 1, outcome: 'http_error', status: 500 },
    { attempt: 2, outcome: 'success', status: 204 }
  ])
})

t.test('an attempt that outlasts the subscriber timeout is abandoned and retried', async (t) => {
  const subscriber = await startSubscriber((_request, n) => (n === 1 ? { status: 200, delayMs: 3000 } : { status: 200 }))
  t.teardown(() => subscriber.close())
  const { app, logs } = await startRelay(t, {
    SUBSCRIBER_CRM_URL: subscriber.url,
    SUBSCRIBER_CRM_EVENTS: '*',
    SUBSCRIBER_CRM_TIMEOUT_MS: '200'
  })
  const id = uniqueEventId()
  await postEvent(app, personaEvent(id))

  const [first, second] = await subscriber.waitFor(2, 2500)
  t.equal(second!.headers['persona-relay-attempt'], '2')
  t.equal(second!.headers['webhook-id'], id)
  t.ok(second!.at - first!.at < 1500, 'the retry did not wait for the late answer')
  await waitForDelivery(app, 'CRM', id, 'completed')
  t.match(deliveryAttempts(logs, 'CRM', id), [
    { attempt: 1, outcome: 'timeout', errorClass: 'timeout' },
    { attempt: 2, outcome: 'success' }
  ])
})

t.test('a connection reset by the subscriber is retried', async (t) => {
  const subscriber = await startSubscriber((_request, n) => (n === 1 ? 'reset' : { status: 200 }))
  t.teardown(() => subscriber.close())
  const { app, logs } = await startRelay(t, { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' })
  const id = uniqueEventId()
  await postEvent(app, personaEvent(id))

  const [, second] = await subscriber.waitFor(2)
  t.equal(second!.headers['persona-relay-attempt'], '2')
  await waitForDelivery(app, 'CRM', id, 'completed')
  t.match(deliveryAttempts(logs, 'CRM', id), [
    { attempt: 1, outcome: 'network_error', errorClass: 'connection_reset' },
    { attempt: 2, outcome: 'success' }
  ])
})

t.test('a refused connection is retried until the subscriber listens', async (t) => {
  const port = await freePort()
  const { app, logs } = await startRelay(t, {
    SUBSCRIBER_LATE_URL: `http://127.0.0.1:${port}/hook`,
    SUBSCRIBER_LATE_EVENTS: '*',
    SUBSCRIBER_LATE_RETRY_SCHEDULE: '0.2',
    SUBSCRIBER_LATE_MAX_ATTEMPTS: '50'
  })
  const id = uniqueEventId()
  await postEvent(app, personaEvent(id))
  await waitUntil('a refused attempt', () => deliveryAttempts(logs, 'LATE', id).some((line) => line.errorClass === 'connection_refused'))
  // The handed-over job is active for a moment while its worker takes the first attempt as its own.
  t.equal((await waitForJob(app, 'LATE', id, 'delayed')).attemptsMade, 1, 'a refused attempt is scheduled again')

  const late = await listenOn(port, () => ({ status: 200 }))
  t.teardown(() => closeServer(late.server))
  await waitUntil('the delivery once the subscriber listens', () => late.received[0])
  const job = await waitForDelivery(app, 'LATE', id, 'completed')
  t.ok(Number(late.received[0]!.headers['persona-relay-attempt']) >= 2, 'delivered by a retry')
  t.equal(job.attemptsMade, Number(late.received[0]!.headers['persona-relay-attempt']))
  t.match(deliveryAttempts(logs, 'LATE', id)[0], { attempt: 1, outcome: 'network_error', errorClass: 'connection_refused' })
})

t.test('after max attempts the job stays failed with its body and is not attempted again', async (t) => {
  const subscriber = await startSubscriber(() => ({ status: 503 }))
  t.teardown(() => subscriber.close())
  const { app, logs } = await startRelay(t, {
    SUBSCRIBER_CRM_URL: subscriber.url,
    SUBSCRIBER_CRM_EVENTS: '*',
    SUBSCRIBER_CRM_MAX_ATTEMPTS: '3'
  })
  const id = uniqueEventId()
  const body = unusualBody(id)
  await postEvent(app, body)

  const received = await subscriber.waitFor(3)
  t.same(received.map((request) => request.headers['persona-relay-attempt']), ['1', '2', '3'])
  const job = await waitForJob(app, 'CRM', id, 'failed')
  t.equal(await storedBody(app, id), body, 'a failed delivery keeps the body for a replay')
  t.equal(job.attemptsMade, 3)
  t.match(job.failedReason, /HTTP 503/)
  // Proving that nothing happens takes a wait: ten times the retry delay.
  await new Promise((resolve) => setTimeout(resolve, 500))
  t.equal(subscriber.received.length, 3, 'no fourth attempt')
  t.equal(deliveryAttempts(logs, 'CRM', id).length, 3)
  t.equal(await app.delivery.queues.get('CRM')!.getJobState(id), 'failed')
})

t.test('a redirect is a failed attempt and is never followed', async (t) => {
  const target = await startSubscriber()
  t.teardown(() => target.close())
  const redirector = await listenOn(0, (url) => ({ status: url === '/moved' ? 301 : 307, headers: { location: target.url } }))
  t.teardown(() => closeServer(redirector.server))
  const { port } = redirector
  const { app, logs } = await startRelay(t, {
    SUBSCRIBER_MOVED_URL: `http://127.0.0.1:${port}/moved`,
    SUBSCRIBER_MOVED_EVENTS: '*',
    SUBSCRIBER_MOVED_MAX_ATTEMPTS: '2',
    SUBSCRIBER_TEMP_URL: `http://127.0.0.1:${port}/temporary`,
    SUBSCRIBER_TEMP_EVENTS: '*',
    SUBSCRIBER_TEMP_MAX_ATTEMPTS: '2'
  })
  const id = uniqueEventId()
  await postEvent(app, personaEvent(id))

  const moved = await waitForJob(app, 'MOVED', id, 'failed')
  const temporary = await waitForJob(app, 'TEMP', id, 'failed')
  t.match(moved.failedReason, /HTTP 301/)
  t.match(temporary.failedReason, /HTTP 307/)
  t.equal(redirector.received.length, 4, 'two attempts each')
  t.equal(target.received.length, 0, 'the redirect target never hears of it')
  t.match(deliveryAttempts(logs, 'MOVED', id), [{ outcome: 'http_error', status: 301 }, { outcome: 'http_error', status: 301 }])
})
