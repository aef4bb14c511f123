import t from 'tap'
import type { App } from '../../src/app.js'
import { personaEvent, startRelay, uniqueEventId, type LogCapture } from '../helpers/app.js'
import { history, postEvent, storedBody, completedBehindTheJob, waitForDelivery, waitForJob } from '../helpers/delivery.js'
import { startSubscriber, type ReceivedRequest } from '../helpers/subscriber.js'
import { waitUntil } from '../helpers/wait-until.js'

const PROBE_INTERVAL_MS = 300

async function pausedSubscribers(app: App): Promise<string[]> {
  const response = await app.inject({ method: 'GET', url: '/readyz' })
  return (response.json() as { pausedSubscribers: string[] }).pausedSubscribers
}


function logLines(logs: LogCapture, msg: string) {
  return logs.lines.filter((line) => line.msg === msg)
}

function idOf(request: ReceivedRequest): string {
  return String(request.headers['webhook-id'])
}

t.test('after 3 failed attempts the subscriber pauses; a probe per interval resumes it on the first success', async (t) => {
  // Three worker attempts trip the breaker, then four probes fail and the fifth succeeds.
  const FAILURES = 7
  const flaky = await startSubscriber((_request, n) => (n <= FAILURES ? { status: 500, body: 'down' } : { status: 200 }))
  const healthy = await startSubscriber()
  t.teardown(() => Promise.all([flaky.close(), healthy.close()]))
  const { app, logs } = await startRelay(t, {
    SUBSCRIBER_FLAKY_URL: flaky.url,
    SUBSCRIBER_FLAKY_EVENTS: '*',
    SUBSCRIBER_FLAKY_PAUSE_AFTER_FAILURES: '3',
    SUBSCRIBER_FLAKY_MAX_ATTEMPTS: '20',
    SUBSCRIBER_HEALTHY_URL: healthy.url,
    SUBSCRIBER_HEALTHY_EVENTS: '*',
    SUBSCRIBER_HEALTHY_PAUSE_AFTER_FAILURES: '3',
    BREAKER_PROBE_INTERVAL_SECONDS: String(PROBE_INTERVAL_MS / 1000)
  })
  const queue = app.delivery.queues.get('FLAKY')!
  const control = app.delivery.controls.get('FLAKY')!
  const first = uniqueEventId()
  await postEvent(app, personaEvent(first))

  await waitUntil('the breaker to pause FLAKY and say so', async () => (await queue.isPaused()) && logLines(logs, 'subscriber paused').length > 0)
  const workerAttempts = flaky.received.slice(0, 3)
  t.same(workerAttempts.map(idOf), [first, first, first])
  t.same(workerAttempts.map((request) => request.headers['persona-relay-attempt']), ['1', '2', '3'])
  t.equal(logLines(logs, 'subscriber paused').length, 1)
  t.match(logLines(logs, 'subscriber paused'), [{ subscriber: 'FLAKY', reason: 'breaker', consecutiveFailures: 3 }])
  t.same(await pausedSubscribers(app), ['FLAKY'])
  t.match(await control.state(), { paused: true, reason: 'breaker' })

  const waiting = [uniqueEventId(), uniqueEventId()]
  for (const id of waiting) await postEvent(app, personaEvent(id))
  await healthy.waitFor(3)
  t.same(healthy.received.map(idOf).sort(), [first, ...waiting].sort(), 'the healthy subscriber gets every event while FLAKY is paused')
  for (const id of waiting) {
    const job = await waitUntil(`job ${id} to reach FLAKY's queue`, () => queue.getJob(id))
    t.equal(job.attemptsMade, 0, `${id} spends no attempt while paused`)
    t.equal(await queue.getJobState(id), 'waiting')
  }
  t.equal((await queue.getJob(first))!.attemptsMade, 3, 'the delivery that tripped the breaker spends no more attempts')
  t.ok(flaky.received.length <= FAILURES, 'still paused: no success yet')
  t.same(await pausedSubscribers(app), ['FLAKY'])

  await waitUntil('a probe to resume FLAKY and say so', async () => !(await queue.isPaused()) && logLines(logs, 'subscriber resumed').length > 0)
  t.equal(logLines(logs, 'subscriber resumed').length, 1)
  t.match(logLines(logs, 'subscriber resumed'), [{ subscriber: 'FLAKY', by: 'probe' }])
  const jobs = await Promise.all([first, ...waiting].map((id) => waitForDelivery(app, 'FLAKY', id, 'completed')))
  t.same(await pausedSubscribers(app), [])
  t.match(await control.state(), { paused: false, consecutiveFailures: 0 })
  for (const view of jobs) t.equal(view.attemptsMade, view.eventId === first ? 4 : 1, `${view.eventId} spent only the attempt that delivered it`)

  const histories = new Map(jobs.map((view) => [view.eventId, view.attempts] as const))
  const probes = [...histories.values()].flat().filter((record) => record.probe).sort((a, b) => a.at.localeCompare(b.at))
  t.same(probes.map((record) => record.outcome), ['http_error', 'http_error', 'http_error', 'http_error', 'success'], 'four failed probes, then success')
  // One probe an interval. A probe slowed down on a loaded machine starts its attempt late and the
  // next on time, so single gaps vary; their mean does not, and no tick probes twice.
  const gaps = probes.slice(1).map((record, index) => Date.parse(record.at) - Date.parse(probes[index]!.at))
  const meanGap = gaps.reduce((sum, gap) => sum + gap, 0) / gaps.length
  t.ok(meanGap >= PROBE_INTERVAL_MS - 60 && meanGap <= PROBE_INTERVAL_MS + 150, `probes came ${meanGap.toFixed(0)} ms apart on average (${gaps.join(', ')} ms)`)
  t.ok(gaps.every((gap) => gap >= PROBE_INTERVAL_MS / 4), 'never two from one tick')

  const [probed] = [...histories].find(([, records]) => records.some((record) => record.probe && record.outcome === 'success'))!
  t.equal(await queue.getJob(probed!), undefined, 'the probe completed its delivery and removed the job: nothing will send it again')
  t.equal(await storedBody(app, probed!), null, 'the probe released the body')
  const successes = flaky.received.slice(FAILURES)
  t.same(successes.map(idOf).sort(), [first, ...waiting].sort(), 'after the outage every event arrives exactly once')
  t.equal(idOf(successes[0]!), probed, 'the first success is the probe')
  t.equal(flaky.received.filter((request) => idOf(request) === probed).at(-1), successes[0], 'nothing sent the probed event after the probe')

  t.same(healthy.received.map(idOf).sort(), [first, ...waiting].sort(), 'the healthy subscriber got each event once')
  t.notOk(await app.delivery.queues.get('HEALTHY')!.isPaused())
  t.notOk(logs.lines.some((line) => line.subscriber === 'HEALTHY' && (line.msg === 'subscriber paused' || line.probe)))
})

t.test('a delivery probed while it waits for a long retry is completed at once, not when the retry falls due', async (t) => {
  const subscriber = await startSubscriber((_request, n) => ({ status: n <= 3 ? 500 : 200 }))
  t.teardown(() => subscriber.close())
  const { app, logs } = await startRelay(t, {
    SUBSCRIBER_CRM_URL: subscriber.url,
    SUBSCRIBER_CRM_EVENTS: '*',
    SUBSCRIBER_CRM_RETRY_SCHEDULE: '0.05,0.05,60',
    SUBSCRIBER_CRM_PAUSE_AFTER_FAILURES: '3',
    BREAKER_PROBE_INTERVAL_SECONDS: String(PROBE_INTERVAL_MS / 1000)
  })
  const id = uniqueEventId()
  await postEvent(app, personaEvent(id))

  // The first probe may come at once after the pause: only the log sees both for sure.
  await waitUntil('the breaker to pause and a probe to resume CRM', () => logLines(logs, 'subscriber resumed').length > 0)
  t.match(logLines(logs, 'subscriber paused'), [{ subscriber: 'CRM', reason: 'breaker' }])
  const view = await waitForDelivery(app, 'CRM', id, 'completed')
  t.equal(subscriber.received.length, 4, 'three failures and the probe')
  const records = await history(app, 'CRM', id)
  t.same(records.map(({ attempt, outcome, probe }) => ({ attempt, outcome, probe })), [
    { attempt: 1, outcome: 'http_error', probe: undefined },
    { attempt: 2, outcome: 'http_error', probe: undefined },
    { attempt: 3, outcome: 'http_error', probe: undefined },
    { attempt: 4, outcome: 'success', probe: true }
  ])
  const [third, probe] = [Date.parse(records[2]!.at), Date.parse(records[3]!.at)]
  t.ok(probe - third < 48_000, 'probed before the one-minute retry fell due')
  const finished = Date.parse(view.finishedAt!)
  t.ok(finished - probe < 2000, `completed ${finished - probe} ms after the probe`)
})

t.test('a subscriber paused with nothing left to deliver stays paused until the next event gives the probe something to send', async (t) => {
  const subscriber = await startSubscriber((_request, n) => ({ status: n <= 3 ? 500 : 200 }))
  t.teardown(() => subscriber.close())
  const { app, logs } = await startRelay(t, {
    SUBSCRIBER_CRM_URL: subscriber.url,
    SUBSCRIBER_CRM_EVENTS: '*',
    SUBSCRIBER_CRM_MAX_ATTEMPTS: '3',
    SUBSCRIBER_CRM_PAUSE_AFTER_FAILURES: '3',
    BREAKER_PROBE_INTERVAL_SECONDS: '0.1'
  })
  const queue = app.delivery.queues.get('CRM')!
  const [dead, next] = [uniqueEventId(), uniqueEventId()]
  await postEvent(app, personaEvent(dead))
  await waitForJob(app, 'CRM', dead, 'failed')
  await waitUntil('the breaker to pause CRM', () => logLines(logs, 'subscriber paused').length > 0)
  // Proving that the probes find nothing to send takes a wait: three probe intervals.
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.ok(await queue.isPaused())
  t.equal(subscriber.received.length, 3, 'the dead letter is not probed')

  await postEvent(app, personaEvent(next))
  const view = await waitForDelivery(app, 'CRM', next, 'completed')
  t.match(view.attempts, [{ attempt: 1, outcome: 'success', probe: true }], 'delivered by the probe')
  t.same(subscriber.received.map(idOf), [dead, dead, dead, next])
  t.equal(await queue.getJobState(dead), 'failed')
})

t.test('a probe that finds a delivery already made (its job cut off before it went) removes the job without sending it again', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const { app, config, logs } = await startRelay(t, {
    SUBSCRIBER_CRM_URL: subscriber.url,
    SUBSCRIBER_CRM_EVENTS: '*',
    BREAKER_PROBE_INTERVAL_SECONDS: '0.1'
  })
  const queue = app.delivery.queues.get('CRM')!
  await queue.pause()
  const id = uniqueEventId()
  await postEvent(app, personaEvent(id))
  await waitUntil('the delivery to wait', () => queue.getJob(id))
  // As an instance leaves it that delivered it and stopped before its job completed.
  await completedBehindTheJob({ app, config }, 'CRM', id)
  await app.redis.hset(`${config.redis.layout.prefix}:subscriber:CRM:pause`, { reason: 'breaker', since: new Date().toISOString() })

  await waitUntil('the probe to remove the job', async () => (await queue.getJob(id)) === undefined)
  t.equal(subscriber.received.length, 0, 'sent once already, never again')
  t.equal(await storedBody(app, id), null)
  // What was delivered before says nothing of the subscriber now: the next event is probed.
  t.ok(await queue.isPaused(), 'still paused')
  t.same(logLines(logs, 'subscriber resumed'), [])
})

t.test('a queue paused outside the relay counts as a manual pause', async (t) => {
  const { app } = await startRelay(t, { SUBSCRIBER_CRM_URL: 'http://127.0.0.1:9/hook', SUBSCRIBER_CRM_EVENTS: '*' })
  await app.delivery.queues.get('CRM')!.pause()
  t.same(await app.delivery.controls.get('CRM')!.state(), { paused: true, reason: 'manual', consecutiveFailures: 0 })
  t.same(await pausedSubscribers(app), ['CRM'])
})

t.test('a success resets the failure count: fail, fail, succeed, fail, fail does not pause at threshold 3', async (t) => {
  const failing = new Set([1, 2, 4, 5])
  const subscriber = await startSubscriber((_request, n) => ({ status: failing.has(n) ? 503 : 200 }))
  t.teardown(() => subscriber.close())
  const { app, logs } = await startRelay(t, {
    SUBSCRIBER_CRM_URL: subscriber.url,
    SUBSCRIBER_CRM_EVENTS: '*',
    SUBSCRIBER_CRM_PAUSE_AFTER_FAILURES: '3',
    SUBSCRIBER_CRM_MAX_ATTEMPTS: '5'
  })
  const control = app.delivery.controls.get('CRM')!
  const [one, two] = [uniqueEventId(), uniqueEventId()]

  await postEvent(app, personaEvent(one))
  await waitForDelivery(app, 'CRM', one, 'completed')
  t.equal((await control.state()).consecutiveFailures, 0, 'the success cleared two failures')
  await postEvent(app, personaEvent(two))
  // A pause here would hold the last attempt back for the default 30 s probe interval.
  const job = await waitForDelivery(app, 'CRM', two, 'completed')
  t.equal(job.attemptsMade, 3)
  t.equal(subscriber.received.length, 6)
  t.notOk(await app.delivery.queues.get('CRM')!.isPaused())
  t.same(logLines(logs, 'subscriber paused'), [])
  t.match(await control.state(), { paused: false, consecutiveFailures: 0 })
})

t.test('a manual pause holds deliveries back and is lifted only by a manual resume, never by a probe', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const { app, logs } = await startRelay(t, {
    SUBSCRIBER_CRM_URL: subscriber.url,
    SUBSCRIBER_CRM_EVENTS: '*',
    BREAKER_PROBE_INTERVAL_SECONDS: '0.05'
  })
  const queue = app.delivery.queues.get('CRM')!
  const control = app.delivery.controls.get('CRM')!
  await control.pause('manual')
  t.match(await control.state(), { paused: true, reason: 'manual', consecutiveFailures: 0 })
  t.ok(Date.parse((await control.state()).since!) <= Date.now())
  t.same(await pausedSubscribers(app), ['CRM'])
  t.equal(logLines(logs, 'subscriber paused').length, 1)
  t.match(logLines(logs, 'subscriber paused'), [{ subscriber: 'CRM', reason: 'manual' }])

  const id = uniqueEventId()
  await postEvent(app, personaEvent(id))
  await waitUntil('the delivery to wait in the paused queue', () => queue.getJob(id))
  t.equal(await control.probe(async () => t.fail('a manual pause is never probed') as never), false)
  t.equal(subscriber.received.length, 0)
  t.equal(await queue.getJobState(id), 'waiting')

  await control.resume('manual')
  t.equal(logLines(logs, 'subscriber resumed').length, 1)
  t.match(logLines(logs, 'subscriber resumed'), [{ subscriber: 'CRM', by: 'manual' }])
  await waitForDelivery(app, 'CRM', id, 'completed')
  t.equal(subscriber.received.length, 1)
  t.same(await control.state(), { paused: false, consecutiveFailures: 0 })
})

// A first attempt that fails is handed to the paused queue and counted then; a retry counts its
// failure when it ends. Either way the operator's pause stays manual.
for (const [path, inFlight] of [['a first attempt\'s', 1], ['a retry\'s', 2]] as const) {
  t.test(`${path} failure still in flight when an operator pauses does not turn the manual pause into one a probe lifts`, async (t) => {
    // Only the attempt in flight at the pause is slow, so that the pause comes while it runs.
    const subscriber = await startSubscriber((_request, n) => ({ status: 500, delayMs: n === inFlight ? 300 : 0 }))
    t.teardown(() => subscriber.close())
    const { app, logs } = await startRelay(t, {
      SUBSCRIBER_CRM_URL: subscriber.url,
      SUBSCRIBER_CRM_EVENTS: '*',
      SUBSCRIBER_CRM_PAUSE_AFTER_FAILURES: String(inFlight),
      BREAKER_PROBE_INTERVAL_SECONDS: '0.05'
    })
    const control = app.delivery.controls.get('CRM')!
    const id = uniqueEventId()
    await postEvent(app, personaEvent(id))
    await subscriber.waitFor(inFlight)
    await control.pause('manual')

    await waitUntil('the attempt in flight to fail', async () => (await control.state()).consecutiveFailures === inFlight)
    t.match(await control.state(), { paused: true, reason: 'manual' })
    t.same(logLines(logs, 'subscriber paused').map((line) => line.reason), ['manual'])
    t.equal(await control.probe(async () => t.fail('a manual pause is never probed') as never), false)
    t.equal(subscriber.received.length, inFlight)
  })
}

t.test('a probe of a delivery handed over to a queue the breaker paused keeps its failed first attempt', async (t) => {
  const subscriber = await startSubscriber((_request, n) => (n === 1 ? { status: 500, delayMs: 300 } : { status: 200 }))
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, {
    SUBSCRIBER_CRM_URL: subscriber.url,
    SUBSCRIBER_CRM_EVENTS: '*',
    BREAKER_PROBE_INTERVAL_SECONDS: String(PROBE_INTERVAL_MS / 1000)
  })
  const control = app.delivery.controls.get('CRM')!
  const id = uniqueEventId()
  await postEvent(app, personaEvent(id))
  await subscriber.waitFor(1)
  // The breaker opened on other deliveries' failures while this attempt was still in flight.
  await control.pause('breaker')

  await waitUntil('a probe to resume CRM', async () => !(await app.delivery.queues.get('CRM')!.isPaused()))
  await waitForDelivery(app, 'CRM', id, 'completed')
  t.same((await history(app, 'CRM', id)).map(({ attempt, outcome, probe }) => ({ attempt, outcome, probe })), [
    { attempt: 1, outcome: 'http_error', probe: undefined },
    { attempt: 2, outcome: 'success', probe: true }
  ], 'the failed first attempt, then the probe')
  t.equal(subscriber.received.length, 2)
})
