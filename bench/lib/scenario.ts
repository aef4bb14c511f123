import { Queue } from 'bullmq'
import { Redis } from 'ioredis'
import { blast, paced, type LoadResult, type PacedResult } from './load.js'
import { cpuMs, ROOT, rssSampler, startRelay, type BenchRedis, type Relay } from './processes.js'
import { nowMs, SECRET } from './events.js'

export type Shape = 'all' | 'split'

export interface Settings {
  quick: boolean
  warmupSeconds: number
  intakeSeconds: number
  latencySeconds: number
  verifySeconds: number
  memoryEvents: number
  drainDeadlineMs: number
  latencyRate: number
}

export interface Subscribers { ports: Record<string, number>; control: number }

interface SubscriberStats {
  subscribers: Record<string, { unique: number; deliveries: number; lastAt: number }>
  latency: { count: number; p50: number | null; p99: number | null; max: number | null }
}

async function control<T>(subscribers: Subscribers, path: string): Promise<T> {
  const response = await fetch(`http://127.0.0.1:${subscribers.control}${path}`)
  return await response.json() as T
}

export function relayEnv(redis: Pick<BenchRedis, 'url'>, subscribers: Subscribers, role: string): Record<string, string> {
  return relayEnvFor({ REDIS_URL: redis.url }, subscribers, role)
}

/** The relay's settings on any Redis: `connection` holds REDIS_URL or REDIS_CLUSTER_NODES. */
export function relayEnvFor(connection: Record<string, string>, subscribers: Subscribers, role: string): Record<string, string> {
  const env: Record<string, string> = { ROLE: role, ...connection, PERSONA_WEBHOOK_SECRET: SECRET }
  for (const [name, port] of Object.entries(subscribers.ports)) {
    env[`SUBSCRIBER_${name}_URL`] = `http://127.0.0.1:${port}/hook`
    env[`SUBSCRIBER_${name}_EVENTS`] = '*'
  }
  return env
}

/** Waits (bounded) until every subscriber has `expected` unique events; returns when the last one arrived. */
async function drain(subscribers: Subscribers, expected: number, deadlineMs: number) {
  const deadline = Date.now() + deadlineMs
  for (;;) {
    const counts = await control<Record<string, { unique: number; lastAt: number }>>(subscribers, '/counts')
    const values = Object.values(counts)
    const delivered = Math.min(...values.map((value) => value.unique))
    const lastAt = Math.max(...values.map((value) => value.lastAt))
    // The load generator may not count its last in-flight requests that the relay did accept: done
    // only once every subscriber has them all and nothing has arrived for a while.
    const quiet = nowMs() - lastAt > 1000 && values.every((value) => value.unique === delivered)
    if ((delivered >= expected && quiet) || Date.now() > deadline) return { delivered, lastAt, complete: delivered >= expected }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

/** Events every subscriber has had (the slowest subscriber's count of unique events). */
export async function deliveredToAll(subscribers: Subscribers): Promise<number> {
  const counts = await control<Record<string, { unique: number }>>(subscribers, '/counts')
  return Math.min(...Object.values(counts).map((value) => value.unique))
}

async function backlog(subscribers: Subscribers, sent: number) {
  return sent - await deliveredToAll(subscribers)
}

export interface Burst {
  intake: LoadResult
  /** `duringBurst`: events that had reached all three subscribers when the closed-loop burst ended. */
  throughput: { accepted: number; seconds: number; perSecond: number; complete: boolean; duringBurst: number }
}

export interface ShapeResult extends Burst {
  shape: Shape
  verify?: { rate: number; sent: number; backlogAtEnd: number; drainedWithinMs: number | null; p50: number | null; p99: number | null; max: number | null; aofRewrites: number }
  latency: { rate: number; sender: PacedResult; count: number; p50: number | null; p99: number | null; max: number | null; complete: boolean; aofRewrites: number }
  rssMaxBytes: Record<string, number>
}

/**
 * Counts the AOF rewrites that overlap a phase (one running at its start included): a rewrite forks
 * Redis and competes for the same two cores, which shows in the latency tail.
 */
async function aofRewriteCounter(client: Redis) {
  const persistence = async () => {
    const info = await client.info('persistence')
    const field = (name: string) => Number(new RegExp(`^${name}:(\\d+)`, 'm').exec(info)?.[1] ?? 0)
    return { done: field('aof_rewrites'), running: field('aof_rewrite_in_progress') }
  }
  const start = await persistence()
  return async () => {
    const end = await persistence()
    return end.done - start.done + end.running
  }
}

type BurstSettings = Pick<Settings, 'warmupSeconds' | 'intakeSeconds' | 'drainDeadlineMs'>

/** A short closed-loop burst, delivered and forgotten: connections, JIT and Redis's first allocations warm. */
export async function warmUp(intakeUrl: string, subscribers: Subscribers, settings: BurstSettings): Promise<void> {
  const warm = await blast(intakeUrl, { seconds: settings.warmupSeconds })
  await drain(subscribers, warm.ok, settings.drainDeadlineMs)
  await control(subscribers, '/reset')
}

/**
 * Closed-loop intake at 50 connections, then the wait until every accepted event has reached all
 * three subscribers: intake req/s, and accepted events ÷ time from the first request to the last
 * delivery. `onIntakeEnd` runs the moment the closed loop stops (a CPU reading, say).
 */
export async function burstThenDrain(intakeUrl: string, subscribers: Subscribers, settings: BurstSettings, onIntakeEnd = () => {}): Promise<Burst> {
  const started = nowMs()
  const intake = await blast(intakeUrl, { seconds: settings.intakeSeconds })
  onIntakeEnd()
  const duringBurst = await deliveredToAll(subscribers)
  const drained = await drain(subscribers, intake.ok, settings.drainDeadlineMs)
  const seconds = ((drained.complete && drained.lastAt > 0 ? drained.lastAt : nowMs()) - started) / 1000
  return { intake, throughput: { accepted: intake.ok, seconds, perSecond: drained.delivered / seconds, complete: drained.complete, duringBurst } }
}

/** Waits until no event has reached the slowest subscriber for `quietMs` (what is in flight has landed). */
export async function settled(subscribers: Subscribers, quietMs = 300): Promise<void> {
  for (let last = -1, now = await deliveredToAll(subscribers); now !== last; last = now, now = await deliveredToAll(subscribers)) {
    await new Promise((resolve) => setTimeout(resolve, quietMs))
  }
}

async function startShape(shape: Shape, redis: BenchRedis, subscribers: Subscribers, root: string): Promise<Relay[]> {
  if (shape === 'all') return [await startRelay(relayEnv(redis, subscribers, 'all'), [], root)]
  return [await startRelay(relayEnv(redis, subscribers, 'intake'), [], root), await startRelay(relayEnv(redis, subscribers, 'worker'), [], root)]
}

/** The bench's phases against relays built in `root` (another checkout, for a side-by-side run). */
export async function measureShape(
  shape: Shape, redis: BenchRedis, subscribers: Subscribers, settings: Settings, log: (text: string) => void, root = ROOT
): Promise<ShapeResult> {
  const relays = await startShape(shape, redis, subscribers, root)
  const intakeUrl = relays[0]!.baseUrl
  const names = shape === 'all' ? ['relay (ROLE=all)'] : ['relay (ROLE=intake)', 'relay (ROLE=worker)']
  const sampler = rssSampler(relays.map((relay) => relay.pid))
  const stats = new Redis(redis.url)
  try {
    await warmUp(intakeUrl, subscribers, settings)
    log(`  ${shape}: intake ${settings.intakeSeconds}s at 50 connections`)
    const { intake, throughput } = await burstThenDrain(intakeUrl, subscribers, settings)
    log(`  ${shape}: intake ${intake.rps.toFixed(0)} req/s, end-to-end ${throughput.perSecond.toFixed(0)} events/s`)

    let verify: ShapeResult['verify']
    if (settings.verifySeconds > 0) {
      // Paced just under the measured end-to-end rate: the backlog must stay small and drain at once.
      await control(subscribers, '/reset')
      const rate = Math.max(50, Math.floor(throughput.perSecond * 0.8))
      const aofRewrites = await aofRewriteCounter(stats)
      const sent = await paced(intakeUrl, rate, settings.verifySeconds)
      const backlogAtEnd = await backlog(subscribers, sent.ok)
      const end = nowMs()
      const after = await drain(subscribers, sent.ok, settings.drainDeadlineMs)
      const received = await control<SubscriberStats>(subscribers, '/stats')
      verify = { rate, sent: sent.ok, backlogAtEnd, drainedWithinMs: after.complete ? Math.max(0, after.lastAt - end) : null,
        p50: received.latency.p50, p99: received.latency.p99, max: received.latency.max, aofRewrites: await aofRewrites() }
      log(`  ${shape}: paced ${rate}/s, backlog at end ${backlogAtEnd}`)
    }

    await control(subscribers, '/reset')
    log(`  ${shape}: end-to-end latency at ${settings.latencyRate}/s for ${settings.latencySeconds}s`)
    const aofRewrites = await aofRewriteCounter(stats)
    const sender = await paced(intakeUrl, settings.latencyRate, settings.latencySeconds)
    const delivered = await drain(subscribers, sender.ok, settings.drainDeadlineMs)
    const received = await control<SubscriberStats>(subscribers, '/stats')
    const latency = { rate: settings.latencyRate, sender, ...received.latency, complete: delivered.complete, aofRewrites: await aofRewrites() }
    log(`  ${shape}: latency p50 ${latency.p50?.toFixed(1)} ms, p99 ${latency.p99?.toFixed(1)} ms`)

    const rss = sampler.stop()
    return { shape, intake, throughput, verify, latency, rssMaxBytes: Object.fromEntries(names.map((name, index) => [name, rss[index] ?? 0])) }
  } finally {
    sampler.stop()
    stats.disconnect()
    for (const relay of relays) await relay.stop()
  }
}

async function usedMemory(client: Redis): Promise<number> {
  return Number(/used_memory:(\d+)/.exec(await client.info('memory'))?.[1])
}

/**
 * Redis memory per event fanned out and waiting for delivery to all three subscribers: a ROLE=all
 * relay (built in `root`) whose subscriber queues are paused takes `events` events on an emptied
 * Redis; `used_memory` after the fan-out − before, ÷ events.
 */
export async function measureWaitingMemory(redis: Pick<BenchRedis, 'url'>, subscribers: Subscribers, events: number, root = ROOT): Promise<number> {
  const client = new Redis(redis.url, { maxRetriesPerRequest: null })
  const queues = Object.keys(subscribers.ports).map((name) => new Queue(`delivery-${name}`, { connection: client, prefix: 'persona-relay' }))
  try {
    await client.flushall()
    const relay = await startRelay(relayEnv(redis, subscribers, 'all'), [], root)
    try {
      await Promise.all(queues.map((queue) => queue.pause()))
      await new Promise((resolve) => setTimeout(resolve, 500))
      const before = await usedMemory(client)
      const sent = await blast(relay.baseUrl, { amount: events })
      const deadline = Date.now() + 60_000
      while ((await Promise.all(queues.map((queue) => queue.getWaitingCount()))).some((count) => count < sent.ok)) {
        if (Date.now() > deadline) throw new Error('the fan-out did not queue every event within a minute')
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
      const after = await usedMemory(client)
      return (after - before) / Math.max(1, sent.ok)
    } finally {
      await relay.stop()
    }
  } finally {
    await Promise.all(queues.map((queue) => queue.close()))
    await client.flushall().catch(() => undefined)
    client.disconnect()
  }
}

export interface CostResult {
  events: number
  bytesPerQueuedEvent: number
  accepted: LoadResult & { cpuMsPerRequest: number }
  rejected: LoadResult & { cpuMsPerRequest: number }
}

/** With ROLE=intake nothing delivers, so the intake stream keeps every event: memory per queued event; then accepted vs. rejected cost. */
export async function measureCosts(redis: BenchRedis, subscribers: Subscribers, settings: Settings): Promise<CostResult> {
  const client = new Redis(redis.url)
  const relay = await startRelay(relayEnv(redis, subscribers, 'intake'))
  try {
    await blast(relay.baseUrl, { seconds: settings.warmupSeconds }, true)
    await client.flushall()
    const before = await usedMemory(client)
    const cpuBefore = cpuMs(relay.pid)
    const accepted = await blast(relay.baseUrl, { amount: settings.memoryEvents })
    const cpuAccepted = cpuMs(relay.pid) - cpuBefore
    const after = await usedMemory(client)
    const cpuBeforeRejected = cpuMs(relay.pid)
    const rejected = await blast(relay.baseUrl, { amount: settings.memoryEvents }, true)
    const cpuRejected = cpuMs(relay.pid) - cpuBeforeRejected
    return {
      events: accepted.ok,
      bytesPerQueuedEvent: (after - before) / Math.max(1, accepted.ok),
      accepted: { ...accepted, cpuMsPerRequest: cpuAccepted / accepted.total },
      rejected: { ...rejected, cpuMsPerRequest: cpuRejected / rejected.total }
    }
  } finally {
    await relay.stop()
    await client.flushall().catch(() => undefined)
    client.disconnect()
  }
}
