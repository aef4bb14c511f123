import { parseArgs } from 'node:util'
import { pino } from 'pino'
import { connectRedis } from '../store/redis.js'
import { Backfiller } from '../backfill/backfiller.js'
import type { BackfillJob } from '../backfill/jobs.js'
import { resolveRange } from '../backfill/range.js'
import { ConfigError, loadConfig } from '../config/index.js'
import { EventStore } from '../store/event-store.js'
import { UsageError, type Output } from './args.js'

export const BACKFILL_USAGE = `persona-relay backfill --since <time|duration> [--until <time|duration>] [--dry-run]

Fetches the events Persona lists (its Events API keeps 30 days) back to --since and records and
queues every one the relay has not recorded, exactly as if its webhook had arrived; events already
recorded are skipped. Times are ISO 8601 with a zone (2026-11-27T08:00:00Z) or durations back from
now (30m, 2h, 7d). --dry-run only counts what would be queued, lists the first 100, and writes
nothing. Reads the relay's own environment (REDIS_URL, REDIS_PREFIX, PERSONA_API_KEY,
SUBSCRIBER_*...); a running relay in the worker or all role delivers what it queues. Prints progress
and a JSON summary; exit 1 on failure.`

/** Redis must answer within seconds: a command line tool should fail, not wait for ever. */
const REDIS_OPTIONS = { maxRetriesPerRequest: 2, connectTimeout: 5000, lazyConnect: true }

export async function backfill(argv: string[], env: NodeJS.ProcessEnv, output: Output): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      since: { type: 'string' },
      until: { type: 'string' },
      'dry-run': { type: 'boolean', default: false }
    }
  })
  let config
  try {
    config = loadConfig(env)
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error
    output.err(`persona-relay: ${error.message}`)
    return 1
  }
  const { personaApi } = config
  if (!personaApi) {
    output.err('persona-relay: backfill needs PERSONA_API_KEY (a Persona API key that may list events)')
    return 1
  }
  const redis = connectRedis(config.redis, REDIS_OPTIONS, 'persona-relay:backfill-cli')
  let redisError = ''
  redis.on('error', (error: Error) => {
    redisError = error.message
  })
  try {
    const service = new Backfiller({
      config: { ...config, personaApi },
      redis,
      store: new EventStore(redis, config.redis.layout, config.dedupeTtlSeconds, { replicas: config.redis.waitReplicas, timeoutMs: config.redis.waitTimeoutMs }),
      metrics: undefined,
      // Logs go to stderr, so that stdout holds only the progress and the summary.
      log: pino({ level: config.logLevel }, pino.destination(2))
    })
    const range = resolveRange({ since: values.since, until: values.until }, Date.now(), service.maxAgeMs)
    if ('problem' in range) throw new UsageError(range.problem)
    await redis.connect().catch((error: Error) => {
      // connect() says only that the connection closed; the error event said why.
      throw new Error(`cannot reach Redis (REDIS_URL): ${redisError || error.message}`)
    })
    const started = await service.start({ range, dryRun: values['dry-run'], trigger: 'cli' }, (job) => output.out(progressLine(job)))
    if (!started) {
      output.err('persona-relay: a backfill is already running (another instance or command holds the lock); try again when it ends')
      return 1
    }
    output.out(`backfill ${started.job.id}: ${started.job.since} to ${started.job.until}${started.job.dryRun ? ' (dry run)' : ''}`)
    const job = await started.done
    output.out(JSON.stringify(job))
    if (job.error) output.err(`persona-relay: backfill failed: ${job.error.code}: ${job.error.message}`)
    return job.status === 'succeeded' ? 0 : 1
  } catch (error) {
    if (error instanceof UsageError) throw error
    output.err(`persona-relay: backfill failed: ${(error as Error).message}`)
    return 1
  } finally {
    redis.disconnect()
  }
}

function progressLine(job: BackfillJob): string {
  const counts = job.dryRun ? `would queue ${job.wouldQueue}` : `queued ${job.queued}`
  return `page ${job.pages}: seen ${job.seen}, ${counts}, already recorded ${job.skipped}, invalid ${job.invalid}`
}
