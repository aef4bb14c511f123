import type { FastifyBaseLogger } from 'fastify'
import type { RedisClient } from '../store/redis.js'
import type { Config, PersonaApiConfig } from '../config/index.js'
import { createEventRouter, type EventRouter } from '../config/routing.js'
import { Errors, toServiceError } from '../errors.js'
import type { RelayMetrics } from '../ops/metrics.js'
import { PersonaEventsApi, type EventsApiOptions } from '../persona/events-api.js'
import type { EventStore } from '../store/event-store.js'
import { backfillKeys } from '../store/keys.js'
import { acquireLock, isHeldBy } from './lock.js'
import { BackfillJobs, newJobId, type BackfillJob } from './jobs.js'
import { maxBackfillAgeMs, type BackfillRange } from './range.js'
import { runBackfill } from './run.js'

/** Long enough to outlast a Redis hiccup, short enough that a crashed holder blocks the next run briefly. */
const LOCK_TTL_MS = 30_000

export interface BackfillRequest {
  range: BackfillRange
  dryRun: boolean
  trigger: BackfillJob['trigger']
}

export interface StartedBackfill {
  job: BackfillJob
  /** Resolves with the finished record; a failure is in its `error`, never a rejection. */
  done: Promise<BackfillJob>
}

export interface BackfillerOptions {
  config: Pick<Config, 'redis' | 'subscribers' | 'dedupeTtlSeconds'> & { personaApi: PersonaApiConfig }
  redis: RedisClient
  store: EventStore
  metrics: RelayMetrics | undefined
  log: FastifyBaseLogger
  api?: EventsApiOptions
  lockTtlMs?: number
}

/**
 * Starts backfills, one at a time across every instance (a Redis lock), and keeps their records.
 * The admin API, the CLI and the schedule all come through here.
 */
export class Backfiller {
  private readonly jobs: BackfillJobs
  /** The furthest back a backfill may reach (see resolveRange). */
  readonly maxAgeMs: number
  private readonly api: PersonaEventsApi
  private readonly route: EventRouter
  private readonly lockKey: string
  private readonly running = new Map<string, { controller: AbortController; done: Promise<BackfillJob> }>()

  constructor(private readonly options: BackfillerOptions) {
    const { config, redis } = options
    const keys = backfillKeys(config.redis.layout.prefix)
    this.jobs = new BackfillJobs(redis, keys.job)
    this.maxAgeMs = maxBackfillAgeMs(config.dedupeTtlSeconds)
    this.api = new PersonaEventsApi(config.personaApi, options.api)
    this.route = createEventRouter(config.subscribers)
    this.lockKey = keys.lock
  }

  /** Undefined when a backfill already runs somewhere; otherwise the job, recorded and running. */
  async start(request: BackfillRequest, onProgress?: (job: BackfillJob) => void): Promise<StartedBackfill | undefined> {
    const id = newJobId()
    const lock = await acquireLock(this.options.redis, this.lockKey, this.options.lockTtlMs ?? LOCK_TTL_MS, id)
    if (!lock) return undefined
    const job: BackfillJob = {
      id,
      status: 'running',
      trigger: request.trigger,
      since: new Date(request.range.sinceMs).toISOString(),
      until: new Date(request.range.untilMs).toISOString(),
      dryRun: request.dryRun,
      pages: 0,
      seen: 0,
      queued: 0,
      skipped: 0,
      invalid: 0,
      wouldQueue: 0,
      startedAt: new Date().toISOString()
    }
    try {
      await this.jobs.save(job)
    } catch (error) {
      await lock.release()
      throw error
    }
    const controller = new AbortController()
    const signal = AbortSignal.any([controller.signal, lock.signal])
    const done = this.execute(job, request, signal, onProgress).finally(async () => {
      this.running.delete(job.id)
      await lock.release()
    })
    this.running.set(job.id, { controller, done })
    return { job: { ...job }, done }
  }

  /**
   * A backfill's record. One left `running` by an instance that died is reported interrupted once
   * its lock is gone: a live run holds the lock until its final record is saved, hence the second read.
   */
  async get(id: string): Promise<BackfillJob | undefined> {
    const job = await this.jobs.get(id)
    if (job?.status !== 'running' || (await isHeldBy(this.options.redis, this.lockKey, id))) return job
    const latest = await this.jobs.get(id)
    if (latest?.status !== 'running') return latest
    const { code, message } = new Errors.BACKFILL_INTERRUPTED()
    return { ...latest, status: 'failed', error: { code, message } }
  }

  /** Interrupts what runs here (the records say so) and waits for it to stop. */
  async close(): Promise<void> {
    const runs = [...this.running.values()]
    for (const run of runs) run.controller.abort()
    await Promise.all(runs.map((run) => run.done))
  }

  private async execute(job: BackfillJob, request: BackfillRequest, signal: AbortSignal, onProgress?: (job: BackfillJob) => void) {
    const { store, redis, metrics, log } = this.options
    log.info({ backfillId: job.id, source: 'backfill', since: job.since, until: job.until, dryRun: job.dryRun, trigger: job.trigger }, 'backfill started')
    let result: 'succeeded' | 'failed' = 'succeeded'
    try {
      const counts = await runBackfill(request.range, request.dryRun, {
        api: this.api,
        store,
        redis,
        route: this.route,
        metrics,
        log,
        signal,
        onPage: async (counts) => {
          Object.assign(job, counts)
          await this.jobs.save(job)
          onProgress?.({ ...job })
        }
      })
      Object.assign(job, counts)
    } catch (error) {
      result = 'failed'
      job.error = this.describeFailure(error, signal)
    }
    job.status = result
    job.finishedAt = new Date().toISOString()
    metrics?.backfillRun(result)
    const { id, status, pages, seen, queued, skipped, invalid, wouldQueue, error } = job
    const summary = { backfillId: id, source: 'backfill', status, pages, seen, queued, skipped, invalid, wouldQueue, errorCode: error?.code }
    if (status === 'succeeded') log.info(summary, 'backfill finished')
    else log.warn(summary, 'backfill failed')
    await this.jobs.save(job).catch((saveError: Error) => {
      log.warn({ backfillId: id, err: { message: saveError.message } }, 'backfill record could not be saved')
    })
    return { ...job }
  }

  private describeFailure(error: unknown, signal: AbortSignal): { code: string; message: string } {
    const failure = signal.aborted ? new Errors.BACKFILL_INTERRUPTED() : toServiceError(error as Error)
    if (failure.code === 'INTERNAL_ERROR') {
      this.options.log.error({ source: 'backfill', err: { message: (error as Error).message } }, 'backfill failed unexpectedly')
    }
    return { code: failure.code, message: failure.message }
  }
}
