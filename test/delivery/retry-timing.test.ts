import t, { type Test } from 'tap'
import type { App } from '../../src/app.js'
import { GONE_REASON } from '../../src/delivery/worker.js'
import { personaEvent, startRelay, uniqueEventId } from '../helpers/app.js'
import { closeServer, deliveryAttempts, history, listenOn, postEvent, storedBody, waitForDelivery, waitForJob } from '../helpers/delivery.js'
import { startSubscriber } from '../helpers/subscriber.js'

/** How late BullMQ may start a due retry on a loaded test machine; never how early. */
const LATE_MS = 150
/** Request times are taken on arrival, the delay from the end of the previous attempt. */
const EARLY_MS = 5


function gaps(times: readonly number[]): number[] {
  return times.slice(1).map((time, index) => time - times[index]!)
}

/** Asserts that each gap is the scheduled delay in seconds, within ±20% jitter. */
function assertWithinJitter(t: Test, actual: readonly number[], scheduleSeconds: readonly number[]) {
  t.equal(actual.length, scheduleSeconds.length, `${scheduleSeconds.length} gaps`)
  scheduleSeconds.forEach((seconds, index) => {
    const gap = actual[index]!
    const [low, high] = [seconds * 800 - EARLY_MS, seconds * 1200 + LATE_MS]
    t.ok(gap >= low && gap <= high, `gap ${index + 1} is ${gap} ms, within ${low}..${high} for ${seconds} s ±20%`)
  })
}

/** A subscriber that answers in order from `answers` (the last one repeats) and notes when each request arrived. */
async function scriptedSubscriber(answers: { status: number; headers?: Record<string, string> | (() => Record<string, string>) }[]) {
  const arrivals: number[] = []
  const server = await listenOn(0, () => {
    arrivals.push(Date.now())
    const answer = answers[Math.min(arrivals.length, answers.length) - 1]!
    const headers = typeof answer.headers === 'function' ? answer.headers() : answer.headers
    return { status: answer.status, ...(headers ? { headers } : {}) }
  })
  return { ...server, arrivals, url: `http://127.0.0.1:${server.port}/hook` }
}

t.test('the gaps between attempts follow the retry schedule within ±20%, and the attempts stop at schedule length + 1', async (t) => {
  const subscriber = await startSubscriber(() => ({ status: 500 }))
  t.teardown(() => subscriber.close())
  const { app, config } = await startRelay(t, {
    SUBSCRIBER_X_URL: subscriber.url,
    SUBSCRIBER_X_EVENTS: '*',
    SUBSCRIBER_X_RETRY_SCHEDULE: '0.3,0.6,0.9'
  })
  t.equal(config.subscribers[0]!.maxAttempts, 4)
  const id = uniqueEventId()
  await postEvent(app, personaEvent(id))

  const job = await waitForJob(app, 'X', id, 'failed')
  t.equal(job.attemptsMade, 4)
  t.same(subscriber.received.map((request) => request.headers['persona-relay-attempt']), ['1', '2', '3', '4'])
  assertWithinJitter(t, gaps(subscriber.received.map((request) => request.at)), [0.3, 0.6, 0.9])
})

t.test('the last delay of the schedule repeats when the attempts outlast it', async (t) => {
  const subscriber = await startSubscriber(() => ({ status: 502 }))
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, {
    SUBSCRIBER_X_URL: subscriber.url,
    SUBSCRIBER_X_EVENTS: '*',
    SUBSCRIBER_X_RETRY_SCHEDULE: '0.1,0.4',
    SUBSCRIBER_X_MAX_ATTEMPTS: '5'
  })
  const id = uniqueEventId()
  await postEvent(app, personaEvent(id))

  const job = await waitForJob(app, 'X', id, 'failed')
  t.equal(job.attemptsMade, 5)
  assertWithinJitter(t, gaps(subscriber.received.map((request) => request.at)), [0.1, 0.4, 0.4, 0.4])
})

t.test('the jitter differs from one delivery to the next', async (t) => {
  const seen = new Set<string>()
  const subscriber = await startSubscriber((request) => {
    const id = String(request.headers['webhook-id'])
    if (seen.has(id)) return { status: 200 }
    seen.add(id)
    return { status: 500 }
  })
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, {
    SUBSCRIBER_X_URL: subscriber.url,
    SUBSCRIBER_X_EVENTS: '*',
    SUBSCRIBER_X_RETRY_SCHEDULE: '0.5'
  })
  const ids = Array.from({ length: 10 }, () => uniqueEventId())
  for (const id of ids) await postEvent(app, personaEvent(id))
  for (const id of ids) await waitForDelivery(app, 'X', id, 'completed')

  const delays = ids.map((id) => {
    const [first, second] = subscriber.received.filter((request) => request.headers['webhook-id'] === id)
    return second!.at - first!.at
  })
  for (const delay of delays) t.ok(delay >= 400 - EARLY_MS && delay <= 600 + LATE_MS, `a retry ${delay} ms later is within 0.5 s ±20%`)
  const spread = Math.max(...delays) - Math.min(...delays)
  // Ten uniform draws over 200 ms spread less than 40 ms about once in 250,000 runs.
  t.ok(spread >= 40, `the delays ${delays.join(', ')} spread over ${spread} ms`)
})

t.test('a 429 with Retry-After: 1 delays the next attempt by a second instead of the schedule, only that once', async (t) => {
  const subscriber = await scriptedSubscriber([
    { status: 429, headers: { 'retry-after': '1' } },
    { status: 429 },
    { status: 200 }
  ])
  t.teardown(() => closeServer(subscriber.server))
  const { app } = await startRelay(t, {
    SUBSCRIBER_X_URL: subscriber.url,
    SUBSCRIBER_X_EVENTS: '*',
    SUBSCRIBER_X_RETRY_SCHEDULE: '0.05',
    SUBSCRIBER_X_MAX_ATTEMPTS: '5'
  })
  const id = uniqueEventId()
  await postEvent(app, personaEvent(id))

  const job = await waitForDelivery(app, 'X', id, 'completed')
  t.equal(job.attemptsMade, 3)
  const [afterRetryAfter, afterPlain429] = gaps(subscriber.arrivals)
  t.ok(afterRetryAfter! >= 1000 - EARLY_MS && afterRetryAfter! <= 1000 + LATE_MS, `waited ${afterRetryAfter} ms after Retry-After: 1`)
  t.ok(afterPlain429! <= 60 + LATE_MS, `a 429 without Retry-After waited ${afterPlain429} ms, the 0.05 s schedule`)
  t.same((await history(app, 'X', id)).map(({ attempt, status }) => ({ attempt, status })), [
    { attempt: 1, status: 429 },
    { attempt: 2, status: 429 },
    { attempt: 3, status: 200 }
  ])
})

t.test('a 503 with an HTTP-date Retry-After waits until that date', async (t) => {
  let retryAt = 0
  const subscriber = await scriptedSubscriber([
    {
      status: 503,
      headers: () => {
        // HTTP dates have whole seconds: the next full second at least 1.5 s away.
        retryAt = Math.ceil((Date.now() + 1500) / 1000) * 1000
        return { 'retry-after': new Date(retryAt).toUTCString() }
      }
    },
    { status: 204 }
  ])
  t.teardown(() => closeServer(subscriber.server))
  const { app } = await startRelay(t, { SUBSCRIBER_X_URL: subscriber.url, SUBSCRIBER_X_EVENTS: '*', SUBSCRIBER_X_RETRY_SCHEDULE: '0.05' })
  const id = uniqueEventId()
  await postEvent(app, personaEvent(id))

  await waitForDelivery(app, 'X', id, 'completed')
  const [, retried] = subscriber.arrivals
  const offset = retried! - retryAt
  t.ok(offset >= -EARLY_MS && offset <= LATE_MS, `retried ${offset} ms from the date it was given`)
  t.ok(retried! - subscriber.arrivals[0]! >= 1500 - EARLY_MS, 'not on the 0.05 s schedule')
})

t.test('410 Gone ends the delivery after exactly one attempt, failed as gone', async (t) => {
  const subscriber = await startSubscriber(() => ({ status: 410, body: 'this endpoint was removed' }))
  t.teardown(() => subscriber.close())
  const { app, logs } = await startRelay(t, {
    SUBSCRIBER_X_URL: subscriber.url,
    SUBSCRIBER_X_EVENTS: '*',
    SUBSCRIBER_X_MAX_ATTEMPTS: '10'
  })
  const id = uniqueEventId()
  const body = personaEvent(id)
  await postEvent(app, body)

  const job = await waitForJob(app, 'X', id, 'failed')
  t.equal(job.failedReason, GONE_REASON)
  t.equal(job.attemptsMade, 1)
  t.equal(await storedBody(app, id), body, 'kept for a replay to a fixed endpoint')
  t.equal(subscriber.received.length, 1)
  t.same((await history(app, 'X', id)).map(({ attempt, outcome, status, response }) => ({ attempt, outcome, status, response })), [
    { attempt: 1, outcome: 'http_error', status: 410, response: 'this endpoint was removed' }
  ])
  t.same(deliveryAttempts(logs, 'X', id).map(({ outcome, status }) => ({ outcome, status })), [{ outcome: 'gone', status: 410 }])
})

t.test('a 404 is retried on the schedule like any other 4xx', async (t) => {
  const subscriber = await startSubscriber((_request, n) => ({ status: n === 1 ? 404 : 200 }))
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, { SUBSCRIBER_X_URL: subscriber.url, SUBSCRIBER_X_EVENTS: '*', SUBSCRIBER_X_RETRY_SCHEDULE: '0.2' })
  const id = uniqueEventId()
  await postEvent(app, personaEvent(id))

  const job = await waitForDelivery(app, 'X', id, 'completed')
  t.equal(job.attemptsMade, 2)
  assertWithinJitter(t, gaps(subscriber.received.map((request) => request.at)), [0.2])
  t.same((await history(app, 'X', id)).map(({ attempt, outcome, status }) => ({ attempt, outcome, status })), [
    { attempt: 1, outcome: 'http_error', status: 404 },
    { attempt: 2, outcome: 'success', status: 200 }
  ])
})
