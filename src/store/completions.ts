import type { ChainableCommander, Redis } from 'ioredis'
import type { AttemptRecord } from './attempts.js'

/** A delivery that fan-out's immediate attempt completed, so it never became a BullMQ job. */
export interface DeliveredRecord {
  eventId: string
  eventName: string
  /** When the relay received the event: the delivery's queue time. */
  queuedAt: string
  finishedAt: string
  maxAttempts: number
  attempt: AttemptRecord
}

const SWEEP_BATCH = 1000

/**
 * The history of immediately completed deliveries, per subscriber: a sorted set of event ids by
 * finish time (for newest-first listing and the retention sweep) and a hash of their records. It
 * stands where BullMQ's completed set stands for deliveries that went through a queue, kept for
 * DELIVERY_HISTORY_HOURS too.
 */
export class DeliveredRecords {
  constructor(private readonly redis: Redis, private readonly prefix: string) {}

  private keys(subscriber: string) {
    const byTime = `${this.prefix}:delivered:${subscriber}`
    return { byTime, records: `${byTime}:records` }
  }

  /** Queues the writes on the caller's transaction, which settles the body in the same step. */
  write(transaction: ChainableCommander, subscriber: string, record: DeliveredRecord): void {
    const { byTime, records } = this.keys(subscriber)
    transaction.zadd(byTime, Date.parse(record.finishedAt), record.eventId).hset(records, record.eventId, JSON.stringify(record))
  }

  async get(subscriber: string, eventId: string): Promise<DeliveredRecord | undefined> {
    const raw = await this.redis.hget(this.keys(subscriber).records, eventId)
    return raw ? (JSON.parse(raw) as DeliveredRecord) : undefined
  }

  /** The `count` most recently finished, newest first. */
  async newest(subscriber: string, count: number): Promise<DeliveredRecord[]> {
    const { byTime, records } = this.keys(subscriber)
    const ids = await this.redis.zrevrange(byTime, 0, count - 1)
    if (ids.length === 0) return []
    const raws = await this.redis.hmget(records, ...ids)
    return raws.flatMap((raw) => (raw ? [JSON.parse(raw) as DeliveredRecord] : []))
  }

  async count(subscriber: string): Promise<number> {
    return await this.redis.zcard(this.keys(subscriber).byTime)
  }

  /** Removes the records that finished before `cutoffMs`; returns how many. */
  async sweep(subscriber: string, cutoffMs: number): Promise<number> {
    const { byTime, records } = this.keys(subscriber)
    let removed = 0
    for (;;) {
      const ids = await this.redis.zrangebyscore(byTime, '-inf', `(${cutoffMs}`, 'LIMIT', 0, SWEEP_BATCH)
      if (ids.length === 0) return removed
      await this.redis.multi().zrem(byTime, ...ids).hdel(records, ...ids).exec()
      removed += ids.length
    }
  }
}
