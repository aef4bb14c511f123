import { randomUUID } from 'node:crypto'
import type { RedisClient } from '../store/redis.js'
import Type, { type Static } from 'typebox'

/** How long a finished (or abandoned) backfill's record stays readable. */
export const JOB_TTL_SECONDS = 7 * 24 * 3600

/** An event a dry run found missing: metadata only, as the admin API shows events. */
export const WouldQueueEvent = Type.Object({
  id: Type.String(),
  name: Type.String(),
  createdAt: Type.String(),
  /** The subscribers it would be routed to. */
  subscribers: Type.Array(Type.String())
})

/** The most events a dry run lists; it counts all of them. */
export const WOULD_QUEUE_LISTED = 100

export const BackfillJobSchema = Type.Object({
  id: Type.String(),
  status: Type.Enum(['running', 'succeeded', 'failed']),
  trigger: Type.Enum(['admin', 'cli', 'schedule']),
  since: Type.String(),
  until: Type.String(),
  dryRun: Type.Boolean(),
  pages: Type.Integer(),
  /** Items listed by Persona, in the range or not. */
  seen: Type.Integer(),
  /** Recorded and queued exactly as a webhook would have been. */
  queued: Type.Integer(),
  /** Already recorded (by a webhook or an earlier backfill): not queued again. */
  skipped: Type.Integer(),
  /** Items that are not Persona events: skipped. */
  invalid: Type.Integer(),
  /** Dry run only: events that a real run would queue. */
  wouldQueue: Type.Integer(),
  /** Dry run only: the first WOULD_QUEUE_LISTED of them, newest first as Persona lists them. */
  wouldQueueEvents: Type.Optional(Type.Array(WouldQueueEvent)),
  /** Creation time of the newest event in the range. */
  newestCreatedAt: Type.Optional(Type.String()),
  error: Type.Optional(Type.Object({ code: Type.String(), message: Type.String() })),
  startedAt: Type.String(),
  finishedAt: Type.Optional(Type.String())
})

export type BackfillJob = Static<typeof BackfillJobSchema>
export type WouldQueueEvent = Static<typeof WouldQueueEvent>

export function newJobId(): string {
  return `bf_${randomUUID()}`
}

/** Backfill records in Redis, so that any instance can answer for a backfill another one runs. */
export class BackfillJobs {
  constructor(private readonly redis: RedisClient, private readonly key: (id: string) => string) {}

  async save(job: BackfillJob): Promise<void> {
    await this.redis.set(this.key(job.id), JSON.stringify(job), 'EX', JOB_TTL_SECONDS)
  }

  async get(id: string): Promise<BackfillJob | undefined> {
    const text = await this.redis.get(this.key(id))
    return text === null ? undefined : (JSON.parse(text) as BackfillJob)
  }
}
