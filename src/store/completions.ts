import type { KeyLayout } from '../config/redis.js'
import type { AttemptRecord } from '../delivery/types.js'
import { storeKeys, type StoreKeys } from './keys.js'
import type { RedisClient } from './redis.js'
import type { EventBodies } from './event-bodies.js'

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

/** One completion to write: whose, and whether its delivery held the event's body key. */
export interface Completion {
  subscriber: string
  record: CompletedRecord
  /** Held the body key (a queued delivery, or one of an event older than layout 2): it lets go of it. */
  heldBody: boolean
}

/** Records written before completions moved onto the event's record had only the delivering attempt. */
type LegacyRecord = Omit<CompletedRecord, 'attempts'> & { attempt: AttemptRecord }

function parsed(raw: string): CompletedRecord {
  const stored = JSON.parse(raw) as CompletedRecord | LegacyRecord
  if ('attempts' in stored) return stored
  const { attempt, ...rest } = stored
  return { ...rest, attempts: [attempt] }
}

const SWEEP_BATCH = 1000

/**
 * The one store of completed deliveries. A completion is a field of its event's record
 * (`d:<subscriber>`), where a crash-recovered fan-out and a retry also look to see that the
 * subscriber has the event; a sorted set per subscriber lists them by finish time for the admin
 * API and the retention sweep (DELIVERY_HISTORY_HOURS). delivery/outcomes.ts is its only writer;
 * the sweep trims it. Completions written before this layout (`delivered:<subscriber>:records`)
 * are still read until they age out.
 */
export class Completions {
  private readonly keys: StoreKeys

  constructor(private readonly redis: RedisClient, layout: KeyLayout, private readonly historySeconds: number) {
    this.keys = storeKeys(layout)
  }

  /**
   * Writes a batch of completions: one write per event (its completion fields), one index entry per
   * subscriber, and for a delivery that held the body key, its release. Its record then may be gone
   * (a replayed dead letter can outlive it): written anew, it lasts as long as the history. The
   * commands go out together, pipelined by the connection per node; an event's go to one node, in
   * the order issued.
   */
  async write(completions: readonly Completion[], bodies: EventBodies): Promise<void> {
    const fieldsByEvent = new Map<string, string[]>()
    const indexBySubscriber = new Map<string, (string | number)[]>()
    for (const { subscriber, record } of completions) {
      const fields = fieldsByEvent.get(record.eventId) ?? []
      fields.push(`d:${subscriber}`, JSON.stringify(record))
      fieldsByEvent.set(record.eventId, fields)
      const index = indexBySubscriber.get(subscriber) ?? []
      index.push(Date.parse(record.finishedAt), record.eventId)
      indexBySubscriber.set(subscriber, index)
    }
    const { redis, keys } = this
    // The completion first: a body released before it would make the delivery look expired.
    await Promise.all([
      ...[...fieldsByEvent].map(([eventId, fields]) => redis.hset(keys.event(eventId), ...fields)),
      ...completions.filter(({ heldBody }) => heldBody).flatMap(({ subscriber, record }) => [
        redis.expire(keys.event(record.eventId), this.historySeconds, 'NX'),
        bodies.release(record.eventId, subscriber)
      ]),
      ...[...indexBySubscriber].map(([subscriber, index]) => redis.zadd(keys.completed(subscriber).byTime, ...index))
    ])
  }

  async get(subscriber: string, eventId: string): Promise<CompletedRecord | undefined> {
    const raw = (await this.redis.hget(this.keys.event(eventId), `d:${subscriber}`)) ??
      (await this.redis.hget(this.keys.completed(subscriber).records, eventId))
    return raw ? parsed(raw) : undefined
  }

  /** The `count` most recently finished, newest first. */
  async newest(subscriber: string, count: number): Promise<CompletedRecord[]> {
    const { byTime, records } = this.keys.completed(subscriber)
    const ids = await this.redis.zrevrange(byTime, 0, count - 1)
    if (ids.length === 0) return []
    const [current, legacy] = await Promise.all([
      Promise.all(ids.map((id) => this.redis.hget(this.keys.event(id), `d:${subscriber}`))),
      this.redis.hmget(records, ...ids)
    ])
    return current.flatMap((raw, index) => {
      const found = raw ?? legacy[index]
      return found ? [parsed(found)] : []
    })
  }

  async count(subscriber: string): Promise<number> {
    return await this.redis.zcard(this.keys.completed(subscriber).byTime)
  }

  /** Removes the completions that finished before `cutoffMs`; returns how many. */
  async sweep(subscriber: string, cutoffMs: number): Promise<number> {
    const { byTime, records } = this.keys.completed(subscriber)
    let removed = 0
    for (;;) {
      const ids = await this.redis.zrangebyscore(byTime, '-inf', `(${cutoffMs}`, 'LIMIT', 0, SWEEP_BATCH)
      if (ids.length === 0) return removed
      await Promise.all([
        ...ids.map((id) => this.redis.hdel(this.keys.event(id), `d:${subscriber}`)),
        this.redis.zrem(byTime, ...ids),
        this.redis.hdel(records, ...ids)
      ])
      removed += ids.length
    }
  }
}
