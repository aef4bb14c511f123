import fp from 'fastify-plugin'
import type { KeyLayout } from '../config/redis.js'
import { ConfigError } from '../config/index.js'
import { Errors } from '../errors.js'
import { isRedaction, type PersonaObject } from '../persona/event.js'
import { storeKeys, type StoreKeys } from './keys.js'
import { checkLayout } from './layout.js'
import type { RedisClient } from './redis.js'
import { pipelineOf, withScripts, type ScriptedRedis } from './scripts.js'

export interface IncomingEvent {
  id: string
  name: string
  createdAt: string
  body: string
  /** Subscribers the event routes to; empty records it without queueing anything. */
  subscribers: readonly string[]
  /** Subscribers whose payload filter refused it. */
  filtered?: readonly string[]
  /** The Persona object it is about, indexed by `created-at`. */
  object?: PersonaObject | undefined
  source: 'webhook' | 'backfill'
  /** The intake span's W3C traceparent, with tracing on: every attempt's span links to it. */
  traceparent?: string | undefined
}

export type RecordOutcome = 'recorded' | 'duplicate'

/** REDIS_WAIT_REPLICAS: how many replicas must have a record before it counts, and how long to wait for them. */
export interface ReplicaWait {
  replicas: number
  timeoutMs: number
}

interface PendingRecord {
  partition: number
  args: (string | number)[]
  resolve: (outcome: RecordOutcome) => void
  reject: (error: Error) => void
}

/**
 * Records the event id and queues the event for fan-out in one atomic script
 * (scripts/record-event-4.lua), so there is no moment where the id is known but the event is not
 * yet safely stored: a concurrent or later copy either finds nothing (and records it itself) or
 * finds it already queued. The body travels once, in the intake stream's entry, for every
 * delivery to share; a delivery that waits in a queue keeps it in a key of its own
 * (event-bodies.ts). An event no subscriber wants keeps no body. Every key the script touches is in
 * the event's intake partition (keys.ts), one slot on a Redis Cluster.
 */
export class EventStore {
  readonly keys: StoreKeys
  private readonly redis: ScriptedRedis
  private pending: PendingRecord[] = []
  private refused: string | undefined

  constructor(
    redis: RedisClient,
    layout: KeyLayout,
    private readonly dedupeTtlSeconds: number,
    private readonly replicaWait: ReplicaWait = { replicas: 0, timeoutMs: 0 }
  ) {
    this.keys = storeKeys(layout)
    this.redis = withScripts(redis)
  }

  /**
   * Requests whose bodies arrive in the same turn of the event loop share one pipeline: one write
   * and one read on the Redis socket for all of them instead of one each, which is much of an
   * intake request's cost. Each event keeps its own atomic script and its own outcome. On a cluster
   * a pipeline goes to one node, so there is one per partition.
   */
  record(event: IncomingEvent, receivedAt: Date = new Date()): Promise<RecordOutcome> {
    if (this.refused) return Promise.reject(new Error(this.refused))
    const createdAtMs = Date.parse(event.createdAt)
    const partition = this.keys.partitionOf(event.id)
    const args = [
      this.keys.event(event.id),
      this.keys.intake(partition),
      // A key either way: a script's key count is fixed.
      this.keys.object(event.object?.id ?? event.id, partition),
      this.keys.received(partition),
      event.id,
      event.name,
      event.createdAt,
      receivedAt.toISOString(),
      event.subscribers.join(','),
      event.body,
      event.source,
      this.dedupeTtlSeconds,
      (event.filtered ?? []).join(','),
      event.object?.type ?? '',
      event.object?.id ?? '',
      Number.isNaN(createdAtMs) ? receivedAt.getTime() : createdAtMs,
      isRedaction(event) ? '1' : '',
      event.traceparent ?? '',
      receivedAt.getTime(),
      this.replicaWait.replicas > 0 ? '1' : ''
    ]
    return new Promise((resolve, reject) => {
      if (this.pending.length === 0) setImmediate(() => this.flush())
      this.pending.push({ partition, args, resolve, reject })
    })
  }

  /** Found too late to refuse start-up: the stored data has another layout (store/layout.ts). */
  refuse(problem: string): void {
    this.refused = problem
  }

  private flush() {
    const byPartition = new Map<number, PendingRecord[]>()
    for (const record of this.pending) {
      const batch = byPartition.get(record.partition)
      if (batch) batch.push(record)
      else byPartition.set(record.partition, [record])
    }
    this.pending = []
    for (const batch of byPartition.values()) this.flushPartition(batch)
  }

  /**
   * With REDIS_WAIT_REPLICAS, the batch's WAIT follows its scripts on the same connection to the
   * same node, so it covers their writes; a duplicate's script writes too (its `seen` count), so
   * that a retry after an unconfirmed answer is not acknowledged before its record is replicated.
   */
  private flushPartition(batch: PendingRecord[]) {
    const { replicas, timeoutMs } = this.replicaWait
    const pipeline = pipelineOf(this.redis)
    for (const { args } of batch) pipeline.recordEvent(...args)
    if (replicas > 0) pipeline.wait(replicas, timeoutMs)
    pipeline.exec().then(
      (results) => {
        // ioredis follows a cluster pipeline's MOVED only when every command failed alike, which WAIT's reply never does.
        if (results?.some(([error]) => error?.message.startsWith('MOVED ')) && 'refreshSlotsCache' in this.redis) this.redis.refreshSlotsCache()
        const confirmed = replicas === 0 || Number(results?.[batch.length]?.[1] ?? 0) >= replicas
        batch.forEach(({ resolve, reject }, index) => {
          const [error, recorded] = results?.[index] ?? [new Error('pipeline returned no result')]
          if (error) reject(error)
          else if (!confirmed) reject(new Errors.REPLICAS_UNCONFIRMED())
          else resolve(recorded === 1 ? 'recorded' : 'duplicate')
        })
      },
      (error: Error) => { for (const { reject } of batch) reject(error) }
    )
  }
}

/** The object's newest `count` events (all of them without a count), newest first, from every partition's object index. */
export async function objectEvents(redis: RedisClient, keys: StoreKeys, objectId: string, count = Infinity): Promise<string[]> {
  const stop = Number.isFinite(count) ? count - 1 : -1
  const pages = await Promise.all(keys.partitions.map((partition) => redis.zrevrange(keys.object(objectId, partition), 0, stop, 'WITHSCORES')))
  return newestFirst(pages, count).map(([eventId]) => eventId)
}

/**
 * Up to `count` events received between `min` and `max` (scores as ZRANGEBYSCORE takes them, `(`
 * for exclusive), newest first, from every partition's index, with when each was received.
 */
export async function receivedBetween(redis: RedisClient, keys: StoreKeys, min: string, max: string, count: number): Promise<[eventId: string, receivedAtMs: number][]> {
  const pages = await Promise.all(keys.partitions.map((partition) =>
    redis.zrevrangebyscore(keys.received(partition), max, min, 'WITHSCORES', 'LIMIT', 0, count)))
  return newestFirst(pages, count)
}

/** Merges WITHSCORES replies (member, score, member, score…) by score, highest first. */
function newestFirst(pages: string[][], count: number): [string, number][] {
  const merged: [string, number][] = []
  for (const page of pages) for (let index = 0; index + 1 < page.length; index += 2) merged.push([page[index]!, Number(page[index + 1])])
  return merged.sort((a, b) => b[1] - a[1]).slice(0, count)
}

declare module 'fastify' {
  interface FastifyInstance {
    eventStore: EventStore
  }
}

/**
 * Start-up refuses a layout that differs from the stored data's (store/layout.ts). With Redis not
 * reachable yet, the check runs once it is, and a mismatch then refuses every record (503, Persona
 * retries) rather than write where nothing would find it.
 */
export const eventStorePlugin = fp<{ layout: KeyLayout; dedupeTtlSeconds: number; replicaWait: ReplicaWait }>(
  async (app, { layout, dedupeTtlSeconds, replicaWait }) => {
    const store = new EventStore(app.redis, layout, dedupeTtlSeconds, replicaWait)
    app.decorate('eventStore', store)
    if (app.redis.status === 'ready') {
      const problem = await checkLayout(app.redis, store.keys, layout)
      if (problem) throw new ConfigError([problem])
      return
    }
    app.redis.once('ready', () => {
      checkLayout(app.redis, store.keys, layout).then((problem) => {
        if (!problem) return
        store.refuse(problem)
        app.log.error({ problem }, 'the stored data has another key layout; refusing to record events')
      }, (error: Error) => app.log.warn({ err: { message: error.message } }, 'could not check the stored key layout'))
    })
  },
  { name: 'event-store', dependencies: ['redis'] }
)
