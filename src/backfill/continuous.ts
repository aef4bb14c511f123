import type { FastifyBaseLogger } from 'fastify'
import type { RedisClient } from '../store/redis.js'
import type { Backfiller } from './backfiller.js'
import type { BackfillRange } from './range.js'

/** Each run looks again this far behind the newest event the last one saw: the API may list events late. */
export const OVERLAP_MS = 10 * 60_000
/**
 * Events younger than this are left to their webhook, which brings the original bytes: Persona's
 * retries (0, 3, 18, 83 and 258 s apart) are over about 6 minutes after the first attempt.
 */
export const SETTLE_MS = 7 * 60_000
/** With no marker yet (first run on this Redis), how far back to look. */
export const FIRST_RUN_LOOKBACK_MS = 24 * 3_600_000

const ADVANCE_MARKER_SCRIPT = `
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
`

/** The window of a scheduled run: from the marker (less the overlap), never further back than allowed. */
export function scheduledRange(markerMs: number | undefined, nowMs: number, maxAgeMs: number): BackfillRange {
  const untilMs = nowMs - SETTLE_MS
  const wanted = markerMs === undefined ? nowMs - FIRST_RUN_LOOKBACK_MS : markerMs - OVERLAP_MS
  return { sinceMs: Math.max(wanted, nowMs - maxAgeMs + 1000), untilMs }
}

export interface ContinuousOptions {
  backfiller: Backfiller
  redis: RedisClient
  /** Where the newest event seen is remembered (epoch milliseconds). */
  markerKey: string
  intervalMs: number
  log: FastifyBaseLogger
}

/**
 * Backfills the last window every `intervalMs`. Every instance of the worker role runs this; the
 * backfill lock lets one of them work at a time and the others skip their turn.
 */
export function startContinuousBackfill(options: ContinuousOptions): () => Promise<void> {
  const { backfiller, redis, markerKey, intervalMs, log } = options
  let stopped = false
  let timer: NodeJS.Timeout | undefined
  let current: Promise<void> = Promise.resolve()

  const tick = async () => {
    const marker = await redis.get(markerKey)
    const range = scheduledRange(marker === null ? undefined : Number(marker), Date.now(), backfiller.maxAgeMs)
    const started = await backfiller.start({ range, dryRun: false, trigger: 'schedule' })
    if (!started) {
      log.debug({ source: 'backfill' }, 'scheduled backfill skipped: another instance is running one')
      return
    }
    const job = await started.done
    if (job.status === 'succeeded' && job.newestCreatedAt) {
      await redis.eval(ADVANCE_MARKER_SCRIPT, 1, markerKey, Date.parse(job.newestCreatedAt))
    }
  }

  const schedule = () => {
    if (stopped) return
    timer = setTimeout(() => {
      current = tick()
        .catch((error: Error) => log.warn({ source: 'backfill', err: { message: error.message } }, 'scheduled backfill could not start'))
        .finally(schedule)
    }, intervalMs)
  }
  schedule()

  return async () => {
    stopped = true
    clearTimeout(timer)
    await current
  }
}
