import fp from 'fastify-plugin'
import type { Redis } from 'ioredis'
import { storeKeys, type StoreKeys } from './keys.js'

export interface IncomingEvent {
  id: string
  name: string
  createdAt: string
  body: string
  /** Subscribers the event routes to; empty records it without queueing anything. */
  subscribers: readonly string[]
  source: 'webhook' | 'backfill'
}

export type RecordOutcome = 'recorded' | 'duplicate'

/**
 * Records the event id and queues the event for fan-out in one atomic script, so there is no
 * moment where the id is known but the event is not yet safely stored: a concurrent or later copy
 * either finds nothing (and records it itself) or finds it already queued. One round trip per event.
 * The body is stored once, beside the record, for every delivery to share; `pending` lists the
 * subscribers that still need it (see event-bodies.ts). An event no subscriber wants keeps no body.
 */
const RECORD_SCRIPT = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'name', ARGV[2], 'createdAt', ARGV[3], 'receivedAt', ARGV[4], 'subscribers', ARGV[5], 'source', ARGV[7])
redis.call('EXPIRE', KEYS[1], ARGV[8])
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[1], 'pending', ARGV[5])
  redis.call('SET', KEYS[3], ARGV[6], 'EX', ARGV[8])
  redis.call('XADD', KEYS[2], '*', 'id', ARGV[1], 'name', ARGV[2], 'createdAt', ARGV[3], 'receivedAt', ARGV[4],
    'subscribers', ARGV[5], 'source', ARGV[7])
end
return 1
`

type RecordArguments = (string | number)[]

interface RecordingPipeline {
  recordEvent(...args: RecordArguments): RecordingPipeline
  exec(): Promise<[Error | null, unknown][] | null>
}

interface RecordingRedis extends Redis {
  pipeline(): ReturnType<Redis['pipeline']> & RecordingPipeline
}

interface PendingRecord {
  args: RecordArguments
  resolve: (outcome: RecordOutcome) => void
  reject: (error: Error) => void
}

export class EventStore {
  readonly keys: StoreKeys
  private readonly redis: RecordingRedis
  private pending: PendingRecord[] = []

  constructor(redis: Redis, prefix: string, private readonly dedupeTtlSeconds: number) {
    this.keys = storeKeys(prefix)
    if (!('recordEvent' in redis)) redis.defineCommand('recordEvent', { numberOfKeys: 3, lua: RECORD_SCRIPT })
    this.redis = redis as RecordingRedis
  }

  /**
   * Requests whose bodies arrive in the same turn of the event loop share one pipeline: one write
   * and one read on the Redis socket for all of them instead of one each, which is much of an
   * intake request's cost. Each event keeps its own atomic script and its own outcome.
   */
  record(event: IncomingEvent, receivedAt: Date = new Date()): Promise<RecordOutcome> {
    const args = [
      this.keys.event(event.id),
      this.keys.intake,
      this.keys.body(event.id),
      event.id,
      event.name,
      event.createdAt,
      receivedAt.toISOString(),
      event.subscribers.join(','),
      event.body,
      event.source,
      this.dedupeTtlSeconds
    ]
    return new Promise((resolve, reject) => {
      if (this.pending.length === 0) setImmediate(() => this.flush())
      this.pending.push({ args, resolve, reject })
    })
  }

  private flush() {
    const batch = this.pending
    this.pending = []
    const pipeline = this.redis.pipeline()
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
