import t from 'tap'
import { replay } from '../../src/delivery/queue.js'
import { storeKeys } from '../../src/store/keys.js'
import { FANOUT_GROUP } from '../../src/delivery/fanout.js'
import type { App } from '../../src/app.js'
import { personaEvent, startRelay, uniqueEventId } from '../helpers/app.js'
import { deliveryView, history, postEvent, storedBody, unusualBody, waitForDelivery, waitForJob } from '../helpers/delivery.js'
import { startSubscriber } from '../helpers/subscriber.js'
import { waitUntil } from '../helpers/wait-until.js'

/** Proving that nothing more happens takes a wait; a queued delivery would be picked up well within it. */
const quietPeriod = () => new Promise((resolve) => setTimeout(resolve, 400))

async function unacknowledged(app: App): Promise<number> {
  const [count] = (await app.redis.xpending(app.eventStore.keys.intake(0), FANOUT_GROUP)) as [number]
  return count
}

t.test('a delivery answered at once never becomes a job; its completion, the body release and the breaker reset are one step', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const { app, config } = await startRelay(t, { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' })
  const failuresKey = storeKeys(config.redis.layout).subscriber('CRM').failures
  await app.redis.set(failuresKey, '3')
  const id = uniqueEventId()
  const body = unusualBody(id)
  await postEvent(app, body)

  const [request] = await subscriber.waitFor(1)
  t.equal(request!.headers['persona-relay-attempt'], '1')
  t.ok(request!.body.equals(Buffer.from(body)), 'the exact bytes')
  const view = await waitForDelivery(app, 'CRM', id, 'completed')
  t.match(view, {
    id: `CRM.${id}`,
    eventName: 'inquiry.approved',
    attemptsMade: 1,
    maxAttempts: config.subscribers[0]!.maxAttempts,
    attempts: [{ attempt: 1, outcome: 'success', status: 200 }]
  })
  t.ok(Date.parse(view.finishedAt!) >= Date.parse(view.queuedAt), 'finished after it was received')
  t.equal(await app.delivery.queues.get('CRM')!.getJob(id), undefined, 'no job was created')
  t.equal(await storedBody(app, id), null, 'the only subscriber has it: the body is gone')
  t.equal(await app.redis.get(failuresKey), null, 'the success reset the breaker count')
  await waitUntil('the intake entry to be acknowledged and removed', async () =>
    (await app.redis.xlen(app.eventStore.keys.intake(0))) === 0 && (await unacknowledged(app)) === 0)
})

t.test('the intake entry stays unacknowledged while its first attempt is in flight', async (t) => {
  const subscriber = await startSubscriber(() => ({ status: 200, delayMs: 800 }))
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' })
  const id = uniqueEventId()
  await postEvent(app, personaEvent(id))

  await subscriber.waitFor(1)
  t.equal(await unacknowledged(app), 1, 'a crash now would leave the entry for another instance to take over')
  await waitForDelivery(app, 'CRM', id, 'completed')
  await waitUntil('the entry to be acknowledged', async () => (await unacknowledged(app)) === 0)
})

t.test('a first attempt that fails is handed to the queue as the job\'s first attempt', async (t) => {
  const subscriber = await startSubscriber((_request, n) => (n === 1 ? { status: 503, body: 'busy' } : { status: 200 }))
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' })
  const id = uniqueEventId()
  await postEvent(app, personaEvent(id))

  const view = await waitForDelivery(app, 'CRM', id, 'completed')
  t.equal(view.attemptsMade, 2, 'the handed-over attempt counts as the first')
  t.equal(await app.delivery.queues.get('CRM')!.getJob(id), undefined, 'its job is gone once completed')
  t.same((await subscriber.waitFor(2)).map((request) => request.headers['persona-relay-attempt']), ['1', '2'])
  t.match(await history(app, 'CRM', id), [
    { attempt: 1, outcome: 'http_error', status: 503, response: 'busy' },
    { attempt: 2, outcome: 'success', status: 200 }
  ])
  t.equal((await history(app, 'CRM', id)).length, 2, 'the first attempt is recorded once')
  t.equal(await storedBody(app, id), null)
  await quietPeriod()
  t.equal(subscriber.received.length, 2, 'nothing sent twice')
})

t.test('a 410 on the first attempt dead-letters as gone, a 500 with one attempt allowed as exhausted', async (t) => {
  const gone = await startSubscriber(() => ({ status: 410 }))
  const failing = await startSubscriber(() => ({ status: 500 }))
  t.teardown(() => Promise.all([gone.close(), failing.close()]))
  const { app } = await startRelay(t, {
    SUBSCRIBER_GONE_URL: gone.url,
    SUBSCRIBER_GONE_EVENTS: '*',
    SUBSCRIBER_ONCE_URL: failing.url,
    SUBSCRIBER_ONCE_EVENTS: '*',
    SUBSCRIBER_ONCE_MAX_ATTEMPTS: '1'
  })
  const id = uniqueEventId()
  await postEvent(app, personaEvent(id))

  t.match(await waitForDelivery(app, 'GONE', id, 'failed'), { deadLetterReason: 'gone', attemptsMade: 1, attempts: [{ attempt: 1, status: 410 }] })
  t.match(await waitForDelivery(app, 'ONCE', id, 'failed'), { deadLetterReason: 'exhausted', attemptsMade: 1, attempts: [{ attempt: 1, status: 500 }] })
  await quietPeriod()
  t.equal(gone.received.length + failing.received.length, 2, 'one request each')
  t.not(await storedBody(app, id), null, 'dead letters keep the body for a replay')

  await replay((await app.delivery.queues.get('GONE')!.getJob(id))!)
  await gone.waitFor(2)
  t.match(await waitForDelivery(app, 'GONE', id, 'failed'), { attempts: [{ attempt: 1, status: 410 }, { attempt: 1, status: 410 }] }, 'the replay sent it again')
})

t.test('a paused subscriber gets no first attempt from fan-out: its delivery waits in the queue until resumed', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' })
  const control = app.delivery.controls.get('CRM')!
  await control.pause('manual')
  const id = uniqueEventId()
  await postEvent(app, personaEvent(id))

  await waitUntil('the delivery to be queued', async () => (await deliveryView(app, 'CRM', id))?.state === 'paused')
  await quietPeriod()
  t.equal(subscriber.received.length, 0, 'nothing sent while paused')
  await control.resume('manual')
  await waitForDelivery(app, 'CRM', id, 'completed')
  t.equal(subscriber.received.length, 1)
})
