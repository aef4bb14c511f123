import type { SubscriberConfig } from '../config/index.js'
import type { StoreKeys } from '../store/keys.js'
import type { ScriptedRedis } from '../store/scripts.js'
import type { DeliveryData } from './types.js'

/** What an ordered delivery's worker may do now. */
export type LaneTurn =
  | { kind: 'go'; stale: boolean }
  /** `blocker` goes first: the lane's holder, or an earlier event of the object still waiting. */
  | { kind: 'wait'; blocker: string }

/**
 * SUBSCRIBER_<NAME>_ORDERING=object: one lane per subscriber and Persona object, in Redis, so that
 * every instance sees it. An ordered delivery is always a queue job (fan-out makes no first attempt
 * of it), due `windowMs` after it arrived; its worker takes the lane before each attempt and keeps it
 * through its retries, until it is delivered, dead-lettered or skipped. A delivery whose turn has
 * not come waits in the delayed set, spending no attempt; the lane's release makes the next one due.
 * Lanes live as long as event records (DEDUPE_TTL_SECONDS), which bounds the stale guard's memory.
 */
export class Ordering {
  constructor(
    private readonly redis: ScriptedRedis,
    private readonly keys: StoreKeys,
    private readonly ttlSeconds: number
  ) {}

  /** Ordered deliveries join their lanes' waiting sets before their jobs exist, so that none overtakes one that arrived earlier. */
  async enqueue(subscriber: string, deliveries: readonly DeliveryData[]): Promise<void> {
    // Commands the connection pipelines: on a cluster each lane is a slot of its own.
    await Promise.all(deliveries.flatMap((data) => {
      const { waiting } = this.keys.lane(subscriber, data.objectId!)
      return [this.redis.zadd(waiting, createdAtMs(data), data.eventId), this.redis.expire(waiting, this.ttlSeconds)]
    }))
  }

  async acquire(subscriber: string, data: DeliveryData, droppedBlocker = ''): Promise<LaneTurn> {
    const { state, waiting } = this.keys.lane(subscriber, data.objectId!)
    const [go, detail] = (await this.redis.laneAcquire(state, waiting, data.eventId, createdAtMs(data), this.ttlSeconds, droppedBlocker)) as [number, number | string]
    return go === 1 ? { kind: 'go', stale: detail === 1 } : { kind: 'wait', blocker: String(detail) }
  }

  /** Leaves the lane; returns the next waiting event of the object, if any. */
  async release(subscriber: string, data: DeliveryData, delivered: boolean): Promise<string | undefined> {
    const { state, waiting } = this.keys.lane(subscriber, data.objectId!)
    const next = (await this.redis.laneRelease(state, waiting, data.eventId, createdAtMs(data), delivered ? '1' : '', this.ttlSeconds)) as string | null
    return next ?? undefined
  }
}

/** Whether this subscriber orders this delivery: it has ordering on, and the event names an object. */
export function isOrdered(subscriber: SubscriberConfig, data: DeliveryData): boolean {
  return subscriber.ordering !== undefined && data.objectId !== undefined
}

/** An event without a readable created-at sorts by when the relay received it. */
function createdAtMs(data: DeliveryData): number {
  const created = Date.parse(data.createdAt)
  return Number.isNaN(created) ? Date.parse(data.receivedAt) : created
}
