import t, { type Test } from 'tap'
import { Redis } from 'ioredis'
import { pino } from 'pino'
import type { FastifyBaseLogger } from 'fastify'
import { loadConfig } from '../src/config/index.js'
import { getDelivery } from '../src/delivery/deliveries.js'
import { ABANDONED_AFTER_MS, FANOUT_GROUP } from '../src/delivery/fanout.js'
import { createQueue } from '../src/delivery/queue.js'
import { createRetryWorker } from '../src/delivery/worker.js'
import { Completions } from '../src/store/completions.js'
import { personaEvent, SECRET, signedHeaders, uniqueEventId } from './helpers/app.js'
import { startRedis, type TestRedis, singleNode } from './helpers/redis.js'
import { startRelayProcess, type RelayProcess } from './helpers/relay-process.js'
import { startSubscriber, type TestSubscriber } from './helpers/subscriber.js'
import { waitUntil } from './helpers/wait-until.js'

const SUBSCRIBERS = ['CRM', 'BILLING'] as const
const LOCK_MS = 2500
const SLOW_MS = 1500

interface Answer {
  status: number
  body: { received?: boolean; id?: string; duplicate?: boolean; code?: string }
}

async function post(relay: RelayProcess, id: string): Promise<Answer> {
  const body = personaEvent(id)
  const response = await fetch(`${relay.baseUrl}/webhooks/persona`, { method: 'POST', headers: signedHeaders(body), body })
  return { status: response.status, body: (await response.json()) as Answer['body'] }
}

/** Every event to both intakes at once, as Persona's retries and a load balancer can make happen. */
async function sendToBoth(t: Test, intakes: RelayProcess[], ids: string[]) {
  const answers = await Promise.all(ids.map((id) => Promise.all(intakes.map((intake) => post(intake, id)))))
  answers.forEach((pair, index) => {
    const id = ids[index]!
    t.same(pair.map((answer) => answer.status), [200, 200], `${id} acknowledged by both intakes`)
    const fresh = pair.filter((answer) => answer.body.duplicate === undefined)
    t.equal(fresh.length, 1, `${id} recorded by exactly one of them`)
    for (const answer of pair) t.equal(answer.body.id, id)
  })
}

function receivedIds(subscriber: TestSubscriber): string[] {
  return subscriber.received.map((request) => String(request.headers['webhook-id']))
}

function countsOf(ids: string[]): Map<string, number> {
  const counts = new Map<string, number>()
  for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1)
  return counts
}

/**
 * Whether createRetryWorker takes its lock and stall check from the config (DELIVERY_LOCK_DURATION_MS);
 * without that a killed worker's deliveries come back only after 30 to 60 s.
 */
async function workerHonoursLockSetting(redis: TestRedis): Promise<boolean> {
  const [subscriber] = loadConfig({
    PERSONA_WEBHOOK_SECRET: SECRET,
    DELIVERY_LOCK_DURATION_MS: String(LOCK_MS),
    SUBSCRIBER_PROBE_URL: 'http://127.0.0.1:9/hook',
    SUBSCRIBER_PROBE_EVENTS: '*'
  }).subscribers
  const connection = new Redis(redis.url, { maxRetriesPerRequest: null })
  // Never given a job: only its options are read, so the collaborators can be empty.
  const worker = createRetryWorker({
    subscriber: subscriber!,
    connection,
    prefix: 'lock-probe',
    log: pino({ level: 'silent' }) as unknown as FastifyBaseLogger
  } as Parameters<typeof createRetryWorker>[0])
  const honoured = worker.opts.lockDuration === LOCK_MS && worker.opts.stalledInterval === LOCK_MS
  await worker.close()
  connection.disconnect()
  return honoured
}

t.test('intake and worker processes share one Redis: each event acknowledged, queued once, delivered once per subscriber', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  let slow = false
  const subscribers = await Promise.all(SUBSCRIBERS.map(() => startSubscriber(() => ({ status: 200, delayMs: slow ? SLOW_MS : 0 }))))
  t.teardown(() => Promise.all(subscribers.map((subscriber) => subscriber.close())))
  const [crm, billing] = subscribers as [TestSubscriber, TestSubscriber]
  const env = {
    SUBSCRIBER_CRM_URL: crm.url,
    SUBSCRIBER_CRM_EVENTS: '*',
    SUBSCRIBER_BILLING_URL: billing.url,
    SUBSCRIBER_BILLING_EVENTS: '*',
    // Two attempts in flight per subscriber and worker: with enough events both workers are busy.
    DELIVERY_CONCURRENCY: '2',
    DELIVERY_TIMEOUT_MS: '5000',
    DELIVERY_LOCK_DURATION_MS: String(LOCK_MS)
  }
  const inspector = new Redis(redis.url, { maxRetriesPerRequest: null })
  t.teardown(() => inspector.disconnect())
  const queues = SUBSCRIBERS.map((name) => createQueue(name, inspector, 'persona-relay'))
  t.teardown(() => Promise.all(queues.map((queue) => queue.close())))
  const completions = new Completions(inspector, singleNode('persona-relay'), 86_400)
  /** As the admin API shows them: a completed delivery is in the completion store, and has no job. */
  const completedEverywhere = async (ids: readonly string[]) => {
    const views = await Promise.all(SUBSCRIBERS.flatMap((name, index) => ids.map((id) => getDelivery(inspector, queues[index]!, completions, name, id))))
    return views.every((view) => view?.state === 'completed')
  }
  const intakeDrained = async () => (await inspector.xlen('persona-relay:intake')) === 0
  const allIds: string[] = []

  const intakes = await Promise.all(['intake-a', 'intake-b'].map((name) => startRelayProcess(t, name, redis, { ...env, ROLE: 'intake' })))

  await t.test('without a worker, events are acknowledged and recorded but wait', async (t) => {
    const ids = Array.from({ length: 4 }, () => uniqueEventId())
    allIds.push(...ids)
    await sendToBoth(t, intakes, ids)
    t.equal(await inspector.xlen('persona-relay:intake'), 4, 'one intake record per event')
    t.same(await inspector.xinfo('GROUPS', 'persona-relay:intake'), [], 'nothing reads the intake stream')
    // A fixed pause, because what is checked is that nothing happens: a delivery takes a few ms.
    await new Promise((resolve) => setTimeout(resolve, 1000))
    t.equal(crm.received.length + billing.received.length, 0, 'no delivery')
    for (const queue of queues) t.equal(await queue.count(), 0, `no ${queue.name} job yet`)
    for (const intake of intakes) {
      const ready = await fetch(`${intake.baseUrl}/readyz`)
      t.equal(ready.status, 200, `${intake.name} is ready without workers`)
      t.match(await ready.json(), { status: 'ready', checks: { redis: 'ok', delivery: 'ok' } })
    }
  })

  const workers = await Promise.all(['worker-1', 'worker-2'].map((name) => startRelayProcess(t, name, redis, { ...env, ROLE: 'worker' })))

  await t.test('a worker serves health but no webhook path', async (t) => {
    for (const worker of workers) {
      const webhook = await post(worker, uniqueEventId())
      t.equal(webhook.status, 404, `${worker.name} has no intake`)
      t.match(webhook.body, { code: 'NOT_FOUND' })
      t.equal((await fetch(`${worker.baseUrl}/healthz`)).status, 200)
      const ready = await fetch(`${worker.baseUrl}/readyz`)
      t.equal(ready.status, 200)
      t.match(await ready.json(), { status: 'ready', checks: { redis: 'ok', delivery: 'ok' } })
    }
  })

  await t.test('the waiting events, then new ones sent to both intakes, are delivered exactly once per subscriber', async (t) => {
    await waitUntil('the backlog to be delivered', () => completedEverywhere(allIds), 15_000)
    const ids = Array.from({ length: 6 }, () => uniqueEventId())
    allIds.push(...ids)
    await sendToBoth(t, intakes, ids)
    await waitUntil('every event to be delivered', () => completedEverywhere(allIds), 15_000)
    for (const [index, name] of SUBSCRIBERS.entries()) {
      const queue = queues[index]!
      const [completed, waiting] = await Promise.all([completions.count(name), queue.count()])
      t.equal(completed, 10, `${name}: one completed delivery per event`)
      t.equal(waiting, 0, `${name}: no job left`)
    }
    for (const [name, subscriber] of [['CRM', crm], ['BILLING', billing]] as const) {
      t.same(receivedIds(subscriber).sort(), [...allIds].sort(), `${name} got every event exactly once`)
    }
    // An entry with first attempts in flight is acknowledged just after they end.
    await waitUntil('the intake stream to be drained', intakeDrained)
    for (const intake of intakes) t.notOk(intake.logs().some((line) => line.msg === 'delivery attempt'), `${intake.name} delivered nothing`)
    const attempts = workers.flatMap((worker) => worker.logs().filter((line) => line.msg === 'delivery attempt'))
    t.equal(attempts.length, 20, 'the workers made one attempt per event and subscriber')
    for (const relay of [...intakes, ...workers]) t.notMatch(relay.stderr(), /error|\n\s+at /i, `${relay.name} reported no error`)
  })

  /** Sends events to the slow subscribers until every worker has all its slots of both busy. */
  const sendWhileSlow = async (t: Test, ids: string[]) => {
    slow = true
    const before = { crm: crm.received.length, billing: billing.received.length }
    await sendToBoth(t, intakes, ids)
    // 2 workers x concurrency 2: once 4 requests of a subscriber are in, each worker has 2 of them in flight.
    await Promise.all([crm.waitFor(before.crm + 4), billing.waitFor(before.billing + 4)])
    return before
  }

  /** What each subscriber got since `before`: every event, none more than twice; the counts per event. */
  const checkEveryEventArrived = (t: Test, ids: string[], before: { crm: number; billing: number }) =>
    ([['CRM', crm, before.crm], ['BILLING', billing, before.billing]] as const).map(([name, subscriber, start]) => {
      const counts = countsOf(receivedIds(subscriber).slice(start))
      t.same([...counts.keys()].sort(), [...ids].sort(), `${name} got every event`)
      t.ok([...counts.values()].every((count) => count <= 2), `${name} got nothing more than twice`)
      return [name, counts] as const
    })

  await t.test('a worker killed while its first attempts are in flight loses none of them', async (t) => {
    // Fails fast with the reason rather than after a 30-60 s recovery that would outlast the wait below.
    if (!t.ok(await workerHonoursLockSetting(redis), 'the worker takes its lock and stall check from DELIVERY_LOCK_DURATION_MS')) return
    const ids = Array.from({ length: 8 }, () => uniqueEventId())
    const before = await sendWhileSlow(t, ids)
    // An entry stays unacknowledged by the worker that read it until its first attempts end; the
    // consumer names start with host and pid. The worker holding the most is the one to kill.
    const unacknowledged = async (worker: RelayProcess) => {
      const pending = (await inspector.xpending('persona-relay:intake', FANOUT_GROUP, '-', '+', 100)) as [string, string, number, number][]
      const entries = new Map((await inspector.xrange('persona-relay:intake', '-', '+')).map(([entry, fields]) => [entry, fields[fields.indexOf('id') + 1]!]))
      return pending.filter(([, consumer]) => consumer.split(':')[1] === String(worker.child.pid)).map(([entry]) => entries.get(entry)!)
    }
    const [first, second] = await Promise.all(workers.map((worker) => unacknowledged(worker))) as [string[], string[]]
    const [victim, survivor] = (first.length >= second.length ? workers : [...workers].reverse()) as [RelayProcess, RelayProcess]
    if (!t.ok(Math.max(first.length, second.length) > 0, `${victim.name} has first attempts in flight`)) return
    victim.child.kill('SIGKILL')
    t.equal((await victim.exited).signal, 'SIGKILL')
    // Read again: what the victim was still sending when it died, which no one acknowledged since.
    const cutOff = await unacknowledged(victim)

    // The survivor takes over the entries once idle for as long as an attempt may last (at most
    // ABANDONED_AFTER_MS with these settings), looking every 10 s, and queues their deliveries as
    // jobs: those the victim had completed are skipped.
    await waitUntil('every acknowledged event to be delivered', () => completedEverywhere(ids), ABANDONED_AFTER_MS + 20_000, 250)
    const arrivals = checkEveryEventArrived(t, ids, before)
    t.ok(cutOff.some((id) => arrivals.some(([, counts]) => counts.get(id) === 2)), 'what the killed worker was sending was sent again')
    await waitUntil('the taken-over entries to be acknowledged', intakeDrained)
    t.notMatch(survivor.stderr(), /error|\n\s+at /i, `${survivor.name} reported no error`)
  })

  await t.test('a worker killed while queued deliveries are in flight loses none of them', async (t) => {
    // Paused while the events arrive, every delivery waits in its queue: the kill tests the queue's
    // locks alone, which recover retries and backlogs.
    if (!t.ok(await workerHonoursLockSetting(redis), 'the worker takes its lock and stall check from DELIVERY_LOCK_DURATION_MS')) return
    for (const worker of workers.filter((worker) => worker.child.exitCode === null && worker.child.signalCode === null)) {
      worker.child.kill('SIGTERM')
      t.equal((await worker.exited).code, 0, `${worker.name} stopped`)
    }
    const jobWorkers = await Promise.all(['worker-3', 'worker-4'].map((name) => startRelayProcess(t, name, redis, { ...env, ROLE: 'worker' })))
    await Promise.all(queues.map((queue) => queue.pause()))
    slow = true
    const before = { crm: crm.received.length, billing: billing.received.length }
    const ids = Array.from({ length: 8 }, () => uniqueEventId())
    await sendToBoth(t, intakes, ids)
    await waitUntil('every event to be queued', async () =>
      (await Promise.all(queues.flatMap((queue) => ids.map((id) => queue.getJob(id))))).every((job) => job !== undefined))
    await Promise.all(queues.map((queue) => queue.resume()))
    // 2 workers x concurrency 2: once 4 requests of a subscriber are in, each worker has 2 of them in flight.
    await Promise.all([crm.waitFor(before.crm + 4), billing.waitFor(before.billing + 4)])
    jobWorkers[0]!.child.kill('SIGKILL')
    t.equal((await jobWorkers[0]!.exited).signal, 'SIGKILL')

    await waitUntil('every acknowledged event to be delivered', () => completedEverywhere(ids), 40_000, 100)
    for (const [name, counts] of checkEveryEventArrived(t, ids, before)) {
      t.ok([...counts.values()].some((count) => count === 2), `${name} got again what the killed worker had in flight`)
    }
    for (const queue of queues) t.equal(await queue.count(), 0, `${queue.name}: no job left`)
  })
})
