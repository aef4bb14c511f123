import type { RedisClient } from '../store/redis.js'
import type { StoreKeys } from '../store/keys.js'
import { repliesOf } from '../store/redis.js'

/** How long a minute's counts are kept: the console charts the last hour. */
export const ACTIVITY_TTL_SECONDS = 2 * 3600
/** The minutes GET /admin/subscribers/:name/activity answers with. */
export const ACTIVITY_MINUTES = 60
const FLUSH_EVERY_MS = 2000

export type ActivityOutcome = 'delivered' | 'failed'

/**
 * Delivered and failed attempts per subscriber and minute, kept in Redis for every instance to add
 * to and any to read. Counted in memory and added every two seconds, in one batch, so that a
 * busy relay pays a few commands a flush rather than two per attempt.
 */
export class Activity {
  private counts = new Map<string, { subscriber: string; minute: number; delivered: number; failed: number }>()
  private readonly timer: NodeJS.Timeout

  constructor(private readonly redis: RedisClient, private readonly keys: StoreKeys) {
    this.timer = setInterval(() => void this.flush().catch(() => undefined), FLUSH_EVERY_MS)
    this.timer.unref()
  }

  count(subscriber: string, outcome: ActivityOutcome, at = Date.now()): void {
    const minute = minuteOf(at)
    const key = `${subscriber} ${minute}`
    const entry = this.counts.get(key) ?? { subscriber, minute, delivered: 0, failed: 0 }
    entry[outcome] += 1
    this.counts.set(key, entry)
  }

  /** Adds what was counted since the last flush; on failure the counts are kept for the next. */
  async flush(): Promise<void> {
    if (this.counts.size === 0) return
    const batch = this.counts
    this.counts = new Map()
    const { redis, keys } = this
    try {
      // Commands, not a pipeline: subscribers' keys may be on different cluster nodes; the
      // connection pipelines them per node.
      await Promise.all([...batch.values()].flatMap(({ subscriber, minute, delivered, failed }) => {
        const key = keys.activity(subscriber, minute)
        return [
          ...(delivered > 0 ? [redis.hincrby(key, 'delivered', delivered)] : []),
          ...(failed > 0 ? [redis.hincrby(key, 'failed', failed)] : []),
          redis.expire(key, ACTIVITY_TTL_SECONDS)
        ]
      }))
    } catch (error) {
      for (const [key, entry] of batch) {
        const kept = this.counts.get(key)
        this.counts.set(key, kept ? { ...kept, delivered: kept.delivered + entry.delivered, failed: kept.failed + entry.failed } : entry)
      }
      throw error
    }
  }

  async close(): Promise<void> {
    clearInterval(this.timer)
    await this.flush().catch(() => undefined)
  }
}

/** The last ACTIVITY_MINUTES minutes of one subscriber, oldest first, minutes without attempts as zeros. */
export async function activityOf(redis: RedisClient, keys: StoreKeys, subscriber: string, now = Date.now()) {
  const last = minuteOf(now)
  const minutes = Array.from({ length: ACTIVITY_MINUTES }, (_, index) => last - (ACTIVITY_MINUTES - 1 - index))
  const pipeline = redis.pipeline()
  for (const minute of minutes) pipeline.hmget(keys.activity(subscriber, minute), 'delivered', 'failed')
  const replies = repliesOf(await pipeline.exec()) as [string | null, string | null][]
  return minutes.map((minute, index) => ({
    at: new Date(minute * 60_000).toISOString(),
    delivered: Number(replies[index]![0] ?? 0),
    failed: Number(replies[index]![1] ?? 0)
  }))
}

function minuteOf(ms: number): number {
  return Math.floor(ms / 60_000)
}
