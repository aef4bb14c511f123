import { createHash } from 'node:crypto'
import type { RelayProcess } from '../test/helpers/relay-process.js'
import { awaitDeliveries, percentile, statusLine, type ScenarioResult, type Tally } from './check.js'
import {
  Cleanup, killRelay, sleep, startChaosCluster, startChaosRedis, startChaosSentinel, startRelay, startTopologyRelay, until,
  type ChaosRedis, type Topology
} from './processes.js'
import { ChaosSubscriber, Sender, type Behaviour } from './traffic.js'

export interface ScenarioOptions {
  events: number
  runId: string
}

type Scenario = { title: string; run(options: ScenarioOptions, cleanup: Cleanup): Promise<Omit<ScenarioResult, 'scenario' | 'title' | 'seconds'>> }

const RATE = 400
/** Longest wait for deliveries after the load; a crashed relay's fan-out entries are taken over after 30 s. */
const DELIVERY_DEADLINE_MS = 90_000

const everything = () => true
const inquiries = (name: string) => name.startsWith('inquiry.')

function subscriberEnv(subscribers: readonly ChaosSubscriber[], patterns: Record<string, string>): Record<string, string> {
  return Object.fromEntries(subscribers.flatMap((subscriber) => [
    [`SUBSCRIBER_${subscriber.name}_URL`, subscriber.url],
    [`SUBSCRIBER_${subscriber.name}_EVENTS`, patterns[subscriber.name] ?? '*']
  ]))
}

function row(sender: Sender, result: Tally, notes: string[], failures: string[], lossMeasured = false) {
  if (result.lost > 0) {
    const lost = `lost ${result.lost} acknowledged deliveries, e.g. ${result.lostIds.join(', ')}`
    if (lossMeasured) notes.push(lost)
    else failures.push(lost)
  }
  return {
    lossMeasured,
    sent: sender.sent,
    acknowledged: sender.events.filter((event) => event.acked).length,
    expected: result.expected,
    delivered: result.delivered,
    lost: result.lost,
    duplicates: result.duplicates,
    notes: [`intake answers: ${statusLine(sender)}`, ...notes],
    failures
  }
}

async function basicSubscribers(cleanup: Cleanup) {
  return [
    await ChaosSubscriber.start(cleanup, 'ALL', everything),
    await ChaosSubscriber.start(cleanup, 'INQ', inquiries)
  ]
}
const BASIC_PATTERNS = { ALL: '*', INQ: 'inquiry.*' }

async function readyAgain(relay: RelayProcess, timeoutMs: number): Promise<boolean> {
  return until(async () => (await fetch(`${relay.baseUrl}/readyz`).catch(() => undefined))?.status === 200, timeoutMs, 100)
}

export const SCENARIOS: Record<number, Scenario> = {
  1: {
    title: 'Redis SIGKILL mid-load, restarted from AOF (appendfsync always)',
    async run({ events, runId }, cleanup) {
      const redis: ChaosRedis = await startChaosRedis(cleanup)
      const subscribers = await basicSubscribers(cleanup)
      const relay = await startRelay(cleanup, 'relay', redis, subscriberEnv(subscribers, BASIC_PATTERNS))
      const sender = new Sender(cleanup, runId, () => [relay.baseUrl])
      const load = sender.run(events, RATE)
      const notes: string[] = []
      const failures: string[] = []
      await until(() => sender.sent >= events * 0.3, 60_000)
      const before = new Map(sender.statuses)
      await redis.kill()
      const downAt = Date.now()
      await sleep(2000)
      const during = new Map([...sender.statuses].map(([status, count]) => [status, count - (before.get(status) ?? 0)]))
      await redis.start()
      const restartedAt = Date.now()
      notes.push(`Redis down ${((Date.now() - downAt) / 1000).toFixed(1)} s; answers in the first 2 s of the outage: ${[...during].filter(([, n]) => n > 0).map(([s, n]) => `${s}×${n}`).join(' ')}`)
      if (![...during].some(([status, count]) => status === '503' && count > 0)) failures.push('no 503 while Redis was down')
      const bad = [...during].filter(([status, count]) => count > 0 && status !== '503' && !status.startsWith('2'))
      if (bad.length > 0) failures.push(`answers other than 503 while Redis was down: ${bad.map(([s, n]) => `${s}×${n}`).join(' ')}`)
      await load
      if (!(await readyAgain(relay, 20_000))) failures.push('relay not ready within 20 s of Redis coming back')
      const firstAckAfter = Math.min(...sender.events.flatMap((event) => (event.ackAt !== undefined && event.ackAt > restartedAt ? [event.ackAt] : [])))
      notes.push(`first 2xx ${((firstAckAfter - restartedAt) / 1000).toFixed(2)} s after Redis was ready again (the relay's reconnection)`)
      return row(sender, await awaitDeliveries(sender, subscribers, DELIVERY_DEADLINE_MS), notes, failures)
    }
  },

  2: {
    title: 'Relay SIGKILL mid-load, restarted',
    async run({ events, runId }, cleanup) {
      const redis = await startChaosRedis(cleanup)
      const subscribers = await basicSubscribers(cleanup)
      const env = subscriberEnv(subscribers, BASIC_PATTERNS)
      let relay = await startRelay(cleanup, 'relay', redis, env)
      let target: string | undefined = relay.baseUrl
      const sender = new Sender(cleanup, runId, () => (target ? [target] : []))
      const load = sender.run(events, RATE)
      await until(() => sender.sent >= events * 0.4, 60_000)
      await killRelay(relay)
      const killedAt = Date.now()
      target = undefined
      relay = await startRelay(cleanup, 'relay-restarted', redis, env)
      target = relay.baseUrl
      const notes = [`relay back after ${((Date.now() - killedAt) / 1000).toFixed(1)} s (TypeScript loader start-up); new posts held meanwhile, those in flight at the kill failed`]
      await load
      const result = await awaitDeliveries(sender, subscribers, DELIVERY_DEADLINE_MS)
      notes.push('duplicates = deliveries in flight at the kill, sent again once their intake entry was taken over or their job lock expired (at-least-once)')
      return row(sender, result, notes, [])
    }
  },

  3: {
    title: 'One subscriber down for a while, then back',
    async run({ events, runId }, cleanup) {
      const redis = await startChaosRedis(cleanup)
      const subscribers = await basicSubscribers(cleanup)
      const [healthy, flaky] = subscribers as [ChaosSubscriber, ChaosSubscriber]
      const relay = await startRelay(cleanup, 'relay', redis, subscriberEnv(subscribers, BASIC_PATTERNS))
      const sender = new Sender(cleanup, runId, () => [relay.baseUrl])
      // Slower than the others so that the healthy subscriber keeps up: a backlog would hide the outage's effect.
      const rate = RATE / 2
      const load = sender.run(events, rate)
      await until(() => sender.sent >= events * 0.2, 60_000)
      await flaky.down()
      const downAt = Date.now()
      await sleep(Math.max(3000, (events / rate) * 400))
      const upAt = Date.now()
      await flaky.up()
      await load
      const result = await awaitDeliveries(sender, subscribers, DELIVERY_DEADLINE_MS)
      const notes: string[] = []
      const failures: string[] = []
      const ackedInOutage = sender.events.filter((event) => event.ackAt !== undefined && event.ackAt >= downAt && event.ackAt < upAt)
      const early = ackedInOutage.filter((event) => inquiries(event.name) && (flaky.deliveries.get(event.id)?.firstAt ?? Infinity) < upAt)
      if (early.length > 0) failures.push(`${early.length} deliveries to the downed subscriber arrived while it was down`)
      const latency = (events: typeof sender.events) => events.flatMap((event) => {
        const delivered = healthy.deliveries.get(event.id)
        return delivered && event.ackAt !== undefined ? [delivered.firstAt - event.ackAt] : []
      })
      const during = latency(ackedInOutage)
      const outside = latency(sender.events.filter((event) => !ackedInOutage.includes(event)))
      const p99During = percentile(during, 99)
      const p99Outside = percentile(outside, 99)
      notes.push(`INQ down ${((upAt - downAt) / 1000).toFixed(1)} s; ${ackedInOutage.filter((e) => inquiries(e.name)).length} of its deliveries queued meanwhile, all delivered after recovery`)
      notes.push(`ALL latency (ack → first delivery) during outage: p50 ${percentile(during, 50)} ms, p99 ${p99During} ms, max ${Math.max(...during)} ms (n=${during.length}); outside: p50 ${percentile(outside, 50)} ms, p99 ${p99Outside} ms (n=${outside.length})`)
      if (!(p99During <= p99Outside + 1000)) failures.push(`healthy subscriber delayed during the outage: p99 ${p99During} ms against ${p99Outside} ms outside it`)
      return row(sender, result, notes, failures)
    }
  },

  4: {
    title: 'Slow subscriber beyond its timeout; subscriber resetting connections',
    async run({ events, runId }, cleanup) {
      const redis = await startChaosRedis(cleanup)
      const third = (id: string) => createHash('sha1').update(id).digest()[0]! % 3 === 0
      // A third of the events get a first answer 3x past the 150 ms timeout; later requests are quick.
      // Keyed on the subscriber's own count, not persona-relay-attempt: a breaker probe re-sends the
      // oldest delivery with the same attempt number each time (see the report), which would stall it.
      const slow: Behaviour = (id, _attempt, nth) => (nth === 1 && third(id) ? { delayMs: 450 } : 'ok')
      // A quarter of all requests (any attempt) have their connection reset.
      const resetting: Behaviour = () => (Math.random() < 0.25 ? 'reset' : 'ok')
      const subscribers = [
        await ChaosSubscriber.start(cleanup, 'SLOW', everything, slow),
        await ChaosSubscriber.start(cleanup, 'RESET', everything, resetting)
      ]
      const relay = await startRelay(cleanup, 'relay', redis, {
        ...subscriberEnv(subscribers, {}),
        SUBSCRIBER_SLOW_TIMEOUT_MS: '150',
        SUBSCRIBER_SLOW_CONCURRENCY: '50'
      })
      const sender = new Sender(cleanup, runId, () => [relay.baseUrl])
      await sender.run(events, RATE)
      const result = await awaitDeliveries(sender, subscribers, DELIVERY_DEADLINE_MS)
      const [slowSub, resetSub] = subscribers as [ChaosSubscriber, ChaosSubscriber]
      const duplicates = (subscriber: ChaosSubscriber) => [...subscriber.deliveries.values()].reduce((sum, d) => sum + d.count - 1, 0)
      const notes = [
        `SLOW: ${slowSub.requests} requests for ${slowSub.deliveries.size} deliveries, ${duplicates(slowSub)} duplicates (timeout 150 ms, 450 ms first answer for 1/3)`,
        `RESET: ${resetSub.requests} requests for ${resetSub.deliveries.size} deliveries, ${duplicates(resetSub)} duplicates (25 % reset)`,
        `most requested by SLOW: ${mostRequested(slowSub)}; by RESET: ${mostRequested(resetSub)}`,
        'an answer written after the relay gave up is not a delivery; a quick 200 that reached the relay after its 150 ms timeout (busy machine) is, and its retry is a duplicate'
      ]
      return row(sender, result, notes, [])
    }
  },

  5: {
    title: 'Two relays on one Redis, each event posted to both',
    async run({ events, runId }, cleanup) {
      const redis = await startChaosRedis(cleanup)
      const subscribers = await basicSubscribers(cleanup)
      const env = subscriberEnv(subscribers, BASIC_PATTERNS)
      // One after the other: two TypeScript loaders compiling at once can miss the 30 s start-up deadline.
      const a = await startRelay(cleanup, 'relay-a', redis, env)
      const b = await startRelay(cleanup, 'relay-b', redis, env)
      const sender = new Sender(cleanup, runId, () => [a.baseUrl, b.baseUrl])
      await sender.run(events, RATE)
      const result = await awaitDeliveries(sender, subscribers, DELIVERY_DEADLINE_MS)
      const failures: string[] = []
      const twice = sender.events.filter((event) => event.recordings > 1).length
      const both = sender.events.filter((event) => event.acked).length
      if (twice > 0) failures.push(`${twice} events recorded by both relays (dedupe not atomic)`)
      if (result.duplicates > 0) failures.push(`${result.duplicates} duplicate deliveries without any crash`)
      return row(sender, result, [`${sender.sent * 2} posts; ${both} events acknowledged, ${twice} recorded twice`], failures)
    }
  },

  6: {
    title: 'Cluster primary SIGKILL mid-load, replica promoted (REDIS_WAIT_REPLICAS=1, appendfsync everysec)',
    run: (options, cleanup) => primaryFailover(startChaosCluster, 1, options, cleanup)
  },

  7: {
    title: 'Sentinel primary SIGKILL mid-load, replica promoted (REDIS_WAIT_REPLICAS=1)',
    run: (options, cleanup) => primaryFailover(startChaosSentinel, 1, options, cleanup)
  },

  8: {
    title: 'Cluster primary SIGKILL mid-load (REDIS_WAIT_REPLICAS=0, measurement)',
    run: (options, cleanup) => primaryFailover(startChaosCluster, 0, options, cleanup)
  },

  9: {
    title: 'Sentinel primary SIGKILL mid-load (REDIS_WAIT_REPLICAS=0, measurement)',
    run: (options, cleanup) => primaryFailover(startChaosSentinel, 0, options, cleanup)
  }
}

const SLOT_ERRORS = /CROSSSLOT/
const SERVER_ERRORS = /"statusCode":5(?!03)\d\d/
const PERSONA_RETRY = { forMs: 30_000, delayMs: 250 }

/**
 * The primary SIGKILLed at 30 % of the load, its replica promoted, the killed node started again;
 * every refused event is retried as Persona would. With REDIS_WAIT_REPLICAS=0 what is lost is
 * measured, not a failure.
 */
async function primaryFailover(start: (cleanup: Cleanup) => Promise<Topology>, waitReplicas: 0 | 1, { events, runId }: ScenarioOptions, cleanup: Cleanup) {
  const topology = await start(cleanup)
  const subscribers = await basicSubscribers(cleanup)
  const { relay, count } = await startTopologyRelay(cleanup, 'relay', topology, {
    ...subscriberEnv(subscribers, BASIC_PATTERNS),
    REDIS_WAIT_REPLICAS: String(waitReplicas),
    REDIS_WAIT_TIMEOUT_MS: '500'
  }, [SLOT_ERRORS, SERVER_ERRORS])
  const sender = new Sender(cleanup, runId, () => [relay.baseUrl])
  const load = sender.run(events, RATE, 32, PERSONA_RETRY)
  const failures: string[] = []
  await until(() => sender.sent >= events * 0.3, 60_000)
  const killedAt = Date.now()
  const { node, note } = await topology.killPrimary()
  const promotedAt = Date.now()
  // The promoted primary has no replica until the killed node is back as one: no WAIT confirms meanwhile.
  const unconfirmed = () => sender.codes.get('503 REPLICAS_UNCONFIRMED') ?? 0
  if (waitReplicas > 0 && !(await until(() => unconfirmed() > 0, 15_000))) failures.push('no 503 REPLICAS_UNCONFIRMED from the promoted primary before a replica was back')
  await node.start()
  const restartedAt = Date.now()
  await load
  const notes = [
    `${note} after ${((promotedAt - killedAt) / 1000).toFixed(1)} s; killed node restarted (it rejoins as a replica) ${((restartedAt - killedAt) / 1000).toFixed(1)} s after the kill`,
    `refusals: ${[...sender.codes].sort().map(([code, n]) => `${code}×${n}`).join(' ') || 'none'}; ${sender.retried} retries; ` +
      `${sender.events.filter((event) => event.acked && event.recordings === 0).length} events acknowledged as duplicates (recorded while refused, confirmed on a retry)`
  ]
  const bad = [...sender.statuses].filter(([status]) => status !== '503' && !status.startsWith('2'))
  if (bad.length > 0) failures.push(`answers other than 2xx and 503: ${bad.map(([s, n]) => `${s}×${n}`).join(' ')}`)
  const unacknowledged = sender.events.filter((event) => !event.acked)
  if (unacknowledged.length > 0) failures.push(`${unacknowledged.length} events never acknowledged in ${PERSONA_RETRY.forMs / 1000} s of retries, e.g. ${unacknowledged.slice(0, 3).map((e) => e.id).join(', ')}`)
  const acks = sender.events.flatMap((event) => (event.ackAt !== undefined && event.ackAt > killedAt ? [event.ackAt] : []))
  const acksDuring = acks.filter((at) => at < restartedAt).length
  const refusedAt = sender.events.flatMap((event) => (event.lastRefusedAt === undefined ? [] : [event.lastRefusedAt]))
  notes.push(`acknowledged between the kill and the restart: ${acksDuring}; last refusal ${((Math.max(killedAt, ...refusedAt) - killedAt) / 1000).toFixed(1)} s after the kill`)
  const result = await awaitDeliveries(sender, subscribers, waitReplicas > 0 ? DELIVERY_DEADLINE_MS : 45_000)
  if (count(SLOT_ERRORS) > 0) failures.push(`${count(SLOT_ERRORS)} relay log lines with CROSSSLOT`)
  if (count(SERVER_ERRORS) > 0) failures.push(`${count(SERVER_ERRORS)} intake answers 5xx other than 503 in the relay's log`)
  return row(sender, result, notes, failures, waitReplicas === 0)
}

function mostRequested(subscriber: ChaosSubscriber): string {
  let top: [string, number[]] | undefined
  for (const entry of subscriber.requestsById) if (!top || entry[1].length > top[1].length) top = entry
  if (!top) return 'none'
  const attempts = [...new Set(top[1])].join(',')
  return `${top[0]} ×${top[1].length} (persona-relay-attempt ${attempts}${subscriber.deliveries.has(top[0]) ? ', delivered' : ', never delivered'})`
}

export async function runScenario(id: number, options: ScenarioOptions): Promise<ScenarioResult> {
  const scenario = SCENARIOS[id]
  if (!scenario) throw new Error(`no scenario ${id}`)
  const cleanup = new Cleanup()
  activeCleanups.add(cleanup)
  const startedAt = Date.now()
  try {
    const result = await scenario.run(options, cleanup)
    return { scenario: id, title: scenario.title, seconds: (Date.now() - startedAt) / 1000, ...result }
  } catch (error) {
    return {
      scenario: id, title: scenario.title, sent: 0, acknowledged: 0, expected: 0, delivered: 0, lost: 0, duplicates: 0,
      seconds: (Date.now() - startedAt) / 1000, notes: [], failures: [`scenario crashed: ${(error as Error).stack ?? String(error)}`]
    }
  } finally {
    await cleanup.run()
    activeCleanups.delete(cleanup)
  }
}

/** Cleanups still to run if the harness itself is interrupted (SIGINT/SIGTERM). */
export const activeCleanups = new Set<Cleanup>()
