import { Queue, Worker } from 'bullmq'
import t, { type Test } from 'tap'
import type { App } from '../../src/app.js'
import { sweepQueue } from '../../src/delivery/maintenance.js'
import type { DeliveryData } from '../../src/delivery/types.js'
import { RESPONSE_EXCERPT_BYTES } from '../../src/delivery/sender.js'
import { personaEvent, startRelay, uniqueEventId } from '../helpers/app.js'
import { deliveryView, history, postEvent, storedBody, unusualBody, waitForDelivery, waitForJob } from '../helpers/delivery.js'
import { freePort } from '../helpers/redis.js'
import { startSubscriber } from '../helpers/subscriber.js'
import { waitUntil } from '../helpers/wait-until.js'


/** The Redis keys of a delivery's job that hold its data and its attempt history. */
async function storedKeys(app: App, subscriber: string, eventId: string): Promise<number> {
  const job = `${app.delivery.queues.get(subscriber)!.qualifiedName}:${eventId}`
  return app.redis.exists(job, `${job}:logs`)
}

/**
 * What holds a completed delivery, which has no job: its record and its entry in the subscriber's
 * finish-time index (the only one there in these tests, so the index's size).
 */
async function storedRecord(app: App, subscriber: string, eventId: string): Promise<number> {
  const { completions } = app.delivery
  return ((await completions.get(subscriber, eventId)) ? 1 : 0) + (await completions.count(subscriber))
}

/** Waits for the delivery, job or record, to vanish from Redis and returns how long after it finished that was. */
async function removedAfterMs(app: App, subscriber: string, eventId: string): Promise<number> {
  const finishedAt = Date.parse((await deliveryView(app, subscriber, eventId))!.finishedAt!)
  await waitUntil(`${subscriber}'s delivery of ${eventId} to be removed`, async () =>
    (await storedKeys(app, subscriber, eventId)) + (await storedRecord(app, subscriber, eventId)) === 0, 5000, 10)
  return Date.now() - finishedAt
}

const isoTime = (value: string) => new Date(value).toISOString() === value

t.test('the history records a 500 with the first KiB of its body, then a timeout, then the success', async (t) => {
  const errorPage = Array.from({ length: 5 * 1024 }, (_, index) => String.fromCharCode(65 + (index % 26))).join('')
  const subscriber = await startSubscriber((_request, n) =>
    n === 1 ? { status: 500, body: errorPage } : n === 2 ? { status: 200, delayMs: 1500 } : { status: 200, body: 'thanks' })
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, {
    SUBSCRIBER_CRM_URL: subscriber.url,
    SUBSCRIBER_CRM_EVENTS: '*',
    SUBSCRIBER_CRM_TIMEOUT_MS: '300',
    SUBSCRIBER_CRM_MAX_ATTEMPTS: '5'
  })
  const id = uniqueEventId()
  const posted = Date.now()
  await postEvent(app, personaEvent(id))

  const view = await waitForDelivery(app, 'CRM', id, 'completed')
  const records = await history(app, 'CRM', id)
  t.same(records.map(({ at: _at, durationMs: _duration, ...rest }) => rest), [
    { attempt: 1, outcome: 'http_error', status: 500, response: errorPage.slice(0, RESPONSE_EXCERPT_BYTES) },
    { attempt: 2, outcome: 'timeout', errorClass: 'timeout' },
    { attempt: 3, outcome: 'success', status: 200, response: 'thanks' }
  ])
  t.equal(RESPONSE_EXCERPT_BYTES, 1024)
  const [first, second, third] = records
  t.ok(records.every((record) => isoTime(record.at)), 'every attempt has an ISO time')
  t.ok(Date.parse(first!.at) >= posted && Date.parse(third!.at) <= Date.parse(view.finishedAt!), 'the times fall between intake and completion')
  t.ok(Date.parse(first!.at) + first!.durationMs <= Date.parse(second!.at), 'the second attempt started after the first ended')
  t.ok(Date.parse(second!.at) + second!.durationMs <= Date.parse(third!.at) + 1, 'the third attempt started after the timeout')
  t.ok(first!.durationMs >= 0 && first!.durationMs < 300, `the 500 took ${first!.durationMs} ms`)
  t.ok(second!.durationMs >= 295 && second!.durationMs < 1000, `the timeout took ${second!.durationMs} ms, the 300 ms limit`)
  t.ok(third!.durationMs >= 0 && third!.durationMs < 300, `the success took ${third!.durationMs} ms`)
  t.notOk(records.some((record) => 'probe' in record), 'no probe attempts')
  t.equal(await storedBody(app, id), null, 'the delivered body is gone but the history stays')
})

t.test('a refused connection is recorded as connection_refused, without status or response', async (t) => {
  const port = await freePort()
  const { app } = await startRelay(t, {
    SUBSCRIBER_GONE_URL: `http://127.0.0.1:${port}/hook`,
    SUBSCRIBER_GONE_EVENTS: '*',
    SUBSCRIBER_GONE_MAX_ATTEMPTS: '1'
  })
  const id = uniqueEventId()
  await postEvent(app, personaEvent(id))

  const job = await waitForJob(app, 'GONE', id, 'failed')
  t.equal(job.failedReason, 'delivery failed: connection_refused')
  const records = await history(app, 'GONE', id)
  t.same(records.map(({ at: _at, durationMs: _duration, ...rest }) => rest), [
    { attempt: 1, outcome: 'network_error', errorClass: 'connection_refused' }
  ])
  t.ok(isoTime(records[0]!.at) && records[0]!.durationMs >= 0)
})

t.test('a delivery that exhausts its attempts is dead-lettered with its body and its whole history', async (t) => {
  const subscriber = await startSubscriber(() => ({ status: 503, body: 'busy' }))
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*', SUBSCRIBER_CRM_MAX_ATTEMPTS: '3' })
  const id = uniqueEventId()
  const body = unusualBody(id)
  await postEvent(app, body)

  const job = await waitForJob(app, 'CRM', id, 'failed')
  t.equal(job.attemptsMade, 3)
  t.equal(await storedBody(app, id), body, 'the exact body, ready for a replay')
  t.match(job.failedReason, /HTTP 503/)
  t.same((await history(app, 'CRM', id)).map(({ attempt, outcome, status, response }) => ({ attempt, outcome, status, response })), [
    { attempt: 1, outcome: 'http_error', status: 503, response: 'busy' },
    { attempt: 2, outcome: 'http_error', status: 503, response: 'busy' },
    { attempt: 3, outcome: 'http_error', status: 503, response: 'busy' }
  ])
})

/**
 * A relay with a subscriber that takes every event at once (OK: completed by its first attempt),
 * one that refuses each first attempt (LATE: completed by a retry) and one that refuses every event
 * at once (DEAD: a dead letter). Completed either way, a delivery is a record and no job.
 */
async function relayWithRetention(t: Test, retention: Record<string, string>) {
  const ok = await startSubscriber()
  const late = await startSubscriber((_request, n) => ({ status: n === 1 ? 500 : 200 }))
  const refusing = await startSubscriber(() => ({ status: 500 }))
  t.teardown(() => Promise.all([ok.close(), late.close(), refusing.close()]))
  const relay = await startRelay(t, {
    SUBSCRIBER_OK_URL: ok.url,
    SUBSCRIBER_OK_EVENTS: '*',
    SUBSCRIBER_LATE_URL: late.url,
    SUBSCRIBER_LATE_EVENTS: '*',
    SUBSCRIBER_DEAD_URL: refusing.url,
    SUBSCRIBER_DEAD_EVENTS: '*',
    SUBSCRIBER_DEAD_MAX_ATTEMPTS: '1',
    ...retention
  })
  const id = uniqueEventId()
  await postEvent(relay.app, personaEvent(id))
  await waitForDelivery(relay.app, 'OK', id, 'completed')
  await waitForDelivery(relay.app, 'LATE', id, 'completed')
  await waitForDelivery(relay.app, 'DEAD', id, 'failed')
  t.equal(await storedRecord(relay.app, 'OK', id), 2, 'the delivery completed at once is stored as a record')
  t.equal(await storedKeys(relay.app, 'OK', id), 0, 'it has no job')
  t.equal(await storedRecord(relay.app, 'LATE', id), 2, 'the delivery completed by a retry is stored as a record too, with its whole history')
  t.equal(await storedKeys(relay.app, 'LATE', id), 0, 'its job is gone')
  t.equal((await deliveryView(relay.app, 'LATE', id))?.attempts.length, 2)
  t.equal(await storedKeys(relay.app, 'DEAD', id), 2, 'the dead letter and its history are stored')
  return { ...relay, id }
}

t.test('completed deliveries older than DELIVERY_HISTORY_HOURS disappear on their own; dead letters stay', async (t) => {
  // 0.0001 h is 360 ms.
  const { app, logs, id } = await relayWithRetention(t, { DELIVERY_HISTORY_HOURS: '0.0001', RETENTION_SWEEP_INTERVAL_SECONDS: '0.2' })

  const ages = await Promise.all([removedAfterMs(app, 'OK', id), removedAfterMs(app, 'LATE', id)])
  for (const [index, age] of ages.entries()) {
    t.ok(age >= 360 - 10 && age <= 360 + 200 + 300, `${['OK', 'LATE'][index]}: removed ${age} ms after it completed`)
  }
  t.equal(await deliveryView(app, 'OK', id), undefined, 'the delivery completed at once is gone')
  t.equal(await deliveryView(app, 'LATE', id), undefined, 'so is the one completed by a retry')
  t.equal(await storedKeys(app, 'DEAD', id), 2, 'the dead letter stays for DEAD_LETTER_RETENTION_DAYS')
  t.equal(await app.delivery.queues.get('DEAD')!.getJobState(id), 'failed')
  const sweeps = logs.lines.filter((line) => line.msg === 'retention sweep removed expired deliveries')
  t.same(sweeps.map(({ queue, removed }) => ({ queue, removed })).sort((a, b) => String(a.queue).localeCompare(String(b.queue))), [
    { queue: 'delivery-LATE', removed: 1 },
    { queue: 'delivery-OK', removed: 1 }
  ])
})

t.test('dead letters older than DEAD_LETTER_RETENTION_DAYS disappear with body and history; completed deliveries stay', async (t) => {
  // 0.00001 days is 864 ms.
  const { app, id } = await relayWithRetention(t, { DEAD_LETTER_RETENTION_DAYS: '0.00001', RETENTION_SWEEP_INTERVAL_SECONDS: '0.2' })

  const age = await removedAfterMs(app, 'DEAD', id)
  t.ok(age >= 864 - 10 && age <= 864 + 200 + 300, `removed ${age} ms after it failed`)
  t.equal(await app.delivery.queues.get('DEAD')!.getJobState(id), 'unknown')
  // The sweep releases the body right after removing the dead letter that held it last.
  await waitUntil('the body to be released', async () => (await storedBody(app, id)) === null)
  t.equal(await storedRecord(app, 'OK', id), 2, 'the completed deliveries stay for DELIVERY_HISTORY_HOURS')
  t.equal(await storedRecord(app, 'LATE', id), 2)
  t.equal((await deliveryView(app, 'OK', id))?.state, 'completed')
  t.equal((await deliveryView(app, 'LATE', id))?.state, 'completed')
})

t.test('the sweeps remove only what is older than each limit and say how many they removed', async (t) => {
  const { app, config, id } = await relayWithRetention(t, { RETENTION_SWEEP_INTERVAL_SECONDS: '3600' })
  const deadQueue = app.delivery.queues.get('DEAD')!
  const sweepRecords = (subscriber: string, historyHours: number) => app.delivery.completions.sweep(subscriber, Date.now() - historyHours * 3_600_000)
  t.equal(await sweepRecords('LATE', config.delivery.historyHours), 0, 'nothing is a day old')
  t.equal(await sweepQueue(deadQueue, config.delivery), 0, 'nothing is two weeks old')
  const tenSeconds = { ...config.delivery, historyHours: 10 / 3600, deadLetterRetentionDays: 10 / 86400 }
  t.equal(await sweepRecords('LATE', tenSeconds.historyHours), 0, 'nothing is ten seconds old')
  t.equal(await sweepQueue(deadQueue, tenSeconds), 0)
  t.equal(await storedRecord(app, 'OK', id), 2)
  t.equal(await storedRecord(app, 'LATE', id), 2)
  t.equal(await storedKeys(app, 'DEAD', id), 2)

  const oneMs = { ...config.delivery, historyHours: 0.001 / 3600, deadLetterRetentionDays: 0.001 / 86400 }
  await waitUntil('the deliveries to be a few milliseconds old', async () => {
    const views = await Promise.all(['OK', 'LATE', 'DEAD'].map((subscriber) => deliveryView(app, subscriber, id)))
    return Date.now() - Math.max(...views.map((view) => Date.parse(view!.finishedAt!))) > 5
  })
  t.equal(await sweepRecords('LATE', oneMs.historyHours), 1)
  t.equal(await storedRecord(app, 'LATE', id), 0, 'the completed delivery and its history are gone')
  t.equal(await storedKeys(app, 'DEAD', id), 2, 'a sweep of one subscriber leaves the others alone')
  t.equal(await storedRecord(app, 'OK', id), 2)
  t.equal(await sweepRecords('OK', oneMs.historyHours), 1)
  t.equal(await storedRecord(app, 'OK', id), 0)
  t.ok(await storedBody(app, id), 'the dead letter still holds the body')
  t.equal(await sweepQueue(deadQueue, oneMs), 1)
  t.equal(await storedKeys(app, 'DEAD', id), 0, 'the dead letter and its history are gone')
  t.ok(await storedBody(app, id), 'the body stays with no one releasing it')
  t.equal(await sweepQueue(deadQueue, oneMs), 0)
  t.equal(await sweepRecords('OK', oneMs.historyHours), 0)
})

// Completed jobs are what releases before the completion store left behind: swept all the same.
t.test('a sweep removes more than one batch of expired jobs', async (t) => {
  const { app, config, redis } = await startRelay(t)
  const connection = { url: redis.url }
  const queue = new Queue<DeliveryData>('bulk', { connection, prefix: config.redis.layout.prefix })
  const worker = new Worker<DeliveryData>('bulk', async () => 'done', { connection, prefix: config.redis.layout.prefix, concurrency: 200 })
  t.teardown(async () => {
    await worker.close()
    await queue.close()
  })
  const count = 2500
  const data: DeliveryData = { eventId: 'e', eventName: 'n', createdAt: '', receivedAt: '', source: 'test' }
  await queue.addBulk(Array.from({ length: count }, (_, index) => ({ name: 'n', data, opts: { jobId: `job${index}` } })))
  await waitUntil('every bulk job to complete', async () => (await queue.getCompletedCount()) === count, 30_000, 100)

  t.equal((await app.redis.keys(`${config.redis.layout.prefix}:bulk:job*`)).length, count, 'the jobs live on the test Redis')
  const justNow = { ...config.delivery, historyHours: 0.001 / 3600 }
  t.equal(await sweepQueue(queue, justNow), count)
  t.equal(await queue.getCompletedCount(), 0)
  t.same(await app.redis.keys(`${config.redis.layout.prefix}:bulk:job*`), [])
})
