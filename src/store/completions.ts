import type { Redis } from 'ioredis'
import type { AttemptRecord } from '../delivery/types.js'
import { storeKeys, type StoreKeys } from './keys.js'
import type { ScriptedTransaction } from './scripts.js'

/** A completed delivery: however it was delivered (first attempt, retry or probe), it is kept here. */
export interface CompletedRecord {
  eventId: string
  eventName: string
  /** When the relay received the event: the delivery's queue time. */
  queuedAt: string
  finishedAt: string
  maxAttempts: number
  /** Every attempt, the delivered one last. */
  attempts: AttemptRecord[]
}

/** Records written before one store held every completion had only the delivering attempt. */
type StoredRecord = CompletedRecord | (Omit<CompletedRecord, 'attempts'> & { attempt: AttemptRecord })

function fromStored(raw: string): CompletedRecord {
  const stored = JSON.parse(raw) as StoredRecord
  if ('attempts' in stored) return stored
  const { attempt, ...rest } = stored
  return { ...rest, attempts: [attempt] }
}

const SWEEP_BATCH = 1000

/**
 * The one store of completed deliveries, per subscriber: a sorted set of event ids by finish time
 * (for newest-first listing and the retention sweep) and a hash of their records, kept for
 * DELIVERY_HISTORY_HOURS. delivery/outcomes.ts is its only writer; the retention sweep trims it.
 */
export class Completions {
  private readonly keys: StoreKeys

  constructor(private readonly redis: Redis, prefix: string) {
    this.keys = storeKeys(prefix)
  }

  /** Queues the writes on the caller's transaction, which releases the body in the same step. */
  queueWrite(transaction: ScriptedTransaction, subscriber: string, record: CompletedRecord): void {
    const { byTime, records } = this.keys.completed(subscriber)
    transaction.zadd(byTime, Date.parse(record.finishedAt), record.eventId).hset(records, record.eventId, JSON.stringify(record))
  }

  async get(subscriber: string, eventId: string): Promise<CompletedRecord | undefined> {
    const raw = await this.redis.hget(this.keys.completed(subscriber).records, eventId)
    return raw ? fromStored(raw) : undefined
  }

  /** The `count` most recently finished, newest first. */
  async newest(subscriber: string, count: number): Promise<CompletedRecord[]> {
    const { byTime, records } = this.keys.completed(subscriber)
    const ids = await this.redis.zrevrange(byTime, 0, count - 1)
    if (ids.length === 0) return []
    const raws = await this.redis.hmget(records, ...ids)
    return raws.flatMap((raw) => (raw ? [fromStored(raw)] : []))
  }

  async count(subscriber: string): Promise<number> {
    return await this.redis.zcard(this.keys.completed(subscriber).byTime)
  }

  /** Removes the records that finished before `cutoffMs`; returns how many. */
  async sweep(subscriber: string, cutoffMs: number): Promise<number> {
    const { byTime, records } = this.keys.completed(subscriber)
    let removed = 0
    for (;;) {
      const ids = await this.redis.zrangebyscore(byTime, '-inf', `(${cutoffMs}`, 'LIMIT', 0, SWEEP_BATCH)
      if (ids.length === 0) return removed
      await this.redis.multi().zrem(byTime, ...ids).hdel(records, ...ids).exec()
      removed += ids.length
    }
  }
}
