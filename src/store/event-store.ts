import fp from 'fastify-plugin'
import type { Redis } from 'ioredis'
import { isRedaction, type PersonaObject } from '../persona/event.js'
import { storeKeys, type StoreKeys } from './keys.js'
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

interface PendingRecord {
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
 * (event-bodies.ts). An event no subscriber wants keeps no body.
 */
export class EventStore {
  readonly keys: StoreKeys
  private readonly redis: ScriptedRedis
  private pending: PendingRecord[] = []

  constructor(redis: Redis, prefix: string, private readonly dedupeTtlSeconds: number) {
    this.keys = storeKeys(prefix)
    this.redis = withScripts(redis)
  }

  /**
   * Requests whose bodies arrive in the same turn of the event loop share one pipeline: one write
   * and one read on the Redis socket for all of them instead of one each, which is much of an
   * intake request's cost. Each event keeps its own atomic script and its own outcome.
   */
  record(event: IncomingEvent, receivedAt: Date = new Date()): Promise<RecordOutcome> {
    const createdAtMs = Date.parse(event.createdAt)
    const args = [
      this.keys.event(event.id),
      this.keys.intake,
      // A key either way: a script's key count is fixed.
      this.keys.object(event.object?.id ?? event.id),
      this.keys.received,
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
      receivedAt.getTime()
    ]
    return new Promise((resolve, reject) => {
      if (this.pending.length === 0) setImmediate(() => this.flush())
      this.pending.push({ args, resolve, reject })
    })
  }

  private flush() {
    const batch = this.pending
    this.pending = []
    const pipeline = pipelineOf(this.redis)
    for (const { args } of batch) pipeline.recordEvent(...args)
    pipeline.exec().then(
      (results) => batch.forEach(({ resolve, reject }, index) => {
        const [error, recorded] = results?.[index] ?? [new Error('pipeline returned no result')]
        if (error) reject(error)
        else resolve(recorded === 1 ? 'recorded' : 'duplicate')
      }),
      (error: Error) => { for (const { reject } of batch) reject(error) }
    )
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    eventStore: EventStore
  }
}

export const eventStorePlugin = fp<{ prefix: string; dedupeTtlSeconds: number }>(
  async (app, { prefix, dedupeTtlSeconds }) => {
    app.decorate('eventStore', new EventStore(app.redis, prefix, dedupeTtlSeconds))
  },
  { name: 'event-store', dependencies: ['redis'] }
)
