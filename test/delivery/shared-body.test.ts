import t from 'tap'
import { EXPIRED_REASON } from '../../src/delivery/worker.js'
import { personaEvent, startRelay, uniqueEventId } from '../helpers/app.js'
import { postEvent, storedBody, completedBehindTheJob, waitForDelivery, waitForJob } from '../helpers/delivery.js'
import { ADMIN_TOKEN, eventView } from '../helpers/admin.js'
import { startSubscriber } from '../helpers/subscriber.js'
import { waitUntil } from '../helpers/wait-until.js'

const DAY = 86_400

t.test('the body is stored once and removed when the last routed subscriber has it', async (t) => {
  const fast = await startSubscriber()
  const slow = await startSubscriber((_request, n) => (n === 1 ? { status: 500 } : { status: 200 }))
  t.teardown(() => Promise.all([fast.close(), slow.close()]))
  const { app } = await startRelay(t, {
    SUBSCRIBER_FAST_URL: fast.url, SUBSCRIBER_FAST_EVENTS: '*',
    SUBSCRIBER_SLOW_URL: slow.url, SUBSCRIBER_SLOW_EVENTS: '*',
    DELIVERY_RETRY_SCHEDULE: '0.5'
  })
  const id = uniqueEventId()
  const body = personaEvent(id, 'inquiry.approved', { 'name-first': 'Marker4711' })
  await postEvent(app, body)
  await waitForDelivery(app, 'FAST', id, 'completed')
  t.equal(await storedBody(app, id), body, 'SLOW has not had it yet')
  // SLOW's first attempt failed, so its delivery waits for the retry as a job, that attempt attached.
  const retried = await waitForJob(app, 'SLOW', id, 'delayed')
  t.notOk(JSON.stringify(retried.data).includes('Marker4711'), 'no job holds a copy')
  t.equal((await waitForDelivery(app, 'SLOW', id, 'completed')).attemptsMade, 2)
  t.equal(await storedBody(app, id), null)
  t.equal(slow.received[1]!.body.toString(), body, 'the retry sent the same bytes')
})

t.test('a delivery already delivered by an attempt cut off before its job completed is completed unsent', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const relay = await startRelay(t, { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' })
  const { app } = relay
  const queue = app.delivery.queues.get('CRM')!
  await queue.pause()
  const id = uniqueEventId()
  await postEvent(app, personaEvent(id))
  await waitForJob(app, 'CRM', id, 'waiting')
  // As an instance leaves it that delivered it and stopped before its job completed.
  await completedBehindTheJob(relay, 'CRM', id)
  await queue.resume()
  await waitUntil('the job to complete and go', async () => (await queue.getJob(id)) === undefined)
  t.equal(subscriber.received.length, 0, 'not sent a second time')
})

t.test('a delivery whose body has expired fails at once, as expired, without a request', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*', ADMIN_TOKEN })
  const queue = app.delivery.queues.get('CRM')!
  await queue.pause()
  const id = uniqueEventId()
  await postEvent(app, personaEvent(id))
  await waitForJob(app, 'CRM', id, 'waiting')
  await app.redis.del(app.eventStore.keys.body(id))
  await queue.resume()
  const job = await waitForJob(app, 'CRM', id, 'failed')
  t.equal(job.failedReason, EXPIRED_REASON)
  t.equal(job.attemptsMade, 1, 'no retry can bring it back')
  t.equal(subscriber.received.length, 0)
  t.match((await eventView(app, id)).deliveries, [{ subscriber: 'CRM', state: 'failed', deadLetterReason: 'expired' }])
})

t.test('a dead letter keeps its body for DEAD_LETTER_RETENTION_DAYS even past the de-duplication window', async (t) => {
  const refusing = await startSubscriber(() => ({ status: 500 }))
  t.teardown(() => refusing.close())
  const { app } = await startRelay(t, {
    SUBSCRIBER_CRM_URL: refusing.url, SUBSCRIBER_CRM_EVENTS: '*', SUBSCRIBER_CRM_MAX_ATTEMPTS: '2',
    DEDUPE_TTL_SECONDS: '3600', DEAD_LETTER_RETENTION_DAYS: '30'
  })
  const id = uniqueEventId()
  await postEvent(app, personaEvent(id))
  t.ok(await app.redis.ttl(app.eventStore.keys.body(id)) <= 3600, 'while it is retried, the body lives as long as the record')
  await waitForJob(app, 'CRM', id, 'failed')
  const ttl = await app.redis.ttl(app.eventStore.keys.body(id))
  t.ok(ttl > 30 * DAY - 10 && ttl <= 30 * DAY, `dead-lettered: TTL ${ttl} s`)
})
