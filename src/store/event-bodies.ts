import type { KeyLayout } from '../config/redis.js'
import { storeKeys, type StoreKeys } from './keys.js'
import type { RedisClient } from './redis.js'
import { withScripts, type ScriptedRedis } from './scripts.js'

/** What a queued delivery finds when it comes for the body. */
export type BodyLookup =
  | { kind: 'body'; body: string }
  /** This subscriber has it already (an attempt whose completion was cut off by a crash). */
  | { kind: 'settled' }
  /** Neither the body nor a record of it: kept past its retention, it is gone. */
  | { kind: 'expired' }
  /** Removed because Persona redacted the event's object: it is never to be sent again. */
  | { kind: 'redacted' }

/** An event of the intake stream and the subscribers it was routed to. */
export interface RoutedIds {
  eventId: string
  subscribers: readonly string[]
}

/**
 * The body of an event, for the deliveries that wait in a queue. A first attempt takes the body
 * from the intake stream's entry; a delivery handed to its queue keeps it in a key of its own,
 * shared by every queued delivery of the event and deleted when the last of them has it
 * (`pending` on the event's record lists them). Persona bodies are personal data: a body no one
 * needs any more does not wait for a retention sweep.
 */
export class EventBodies {
  private readonly keys: StoreKeys
  private readonly redis: ScriptedRedis

  /** `recordTtlSeconds` bounds a body whose record has expired (DEDUPE_TTL_SECONDS). */
  constructor(redis: RedisClient, layout: KeyLayout, private readonly recordTtlSeconds: number) {
    this.keys = storeKeys(layout)
    this.redis = withScripts(redis)
  }

  async lookup(eventId: string, subscriber: string): Promise<BodyLookup> {
    const [kind, body] = (await this.redis.lookupBody(this.keys.event(eventId), this.keys.body(eventId), subscriber)) as [number, string?]
    if (kind === 1) return { kind: 'body', body: body! }
    return { kind: kind === 2 ? 'settled' : kind === 4 ? 'redacted' : 'expired' }
  }

  /**
   * Removes the bodies of events whose Persona object was redacted, in one round trip, and marks
   * their records so; returns how many bodies there were.
   */
  async redact(eventIds: readonly string[]): Promise<number> {
    if (eventIds.length === 0) return 0
    const removed = await Promise.all(eventIds.map((eventId) => this.redis.redactBody(this.keys.event(eventId), this.keys.body(eventId)) as Promise<number>))
    return removed.reduce((sum, count) => sum + count, 0)
  }

  /**
   * Deliveries join the subscriber's queue: each event's body is kept for them (`body` '' when the
   * key exists already), in one round trip.
   */
  async holdAll(subscriber: string, events: readonly { eventId: string; body: string }[]): Promise<void> {
    await Promise.all(events.map(({ eventId, body }) => this.redis.holdBody(this.keys.event(eventId), this.keys.body(eventId), subscriber, body, this.recordTtlSeconds)))
  }

  /** The subscriber no longer holds the body: never to be sent it, or a dead letter removed. */
  async release(eventId: string, subscriber: string): Promise<void> {
    await this.redis.releaseBody(this.keys.event(eventId), this.keys.body(eventId), subscriber)
  }

  /**
   * The routed subscribers that do not have each event yet, in one round trip; undefined where the
   * event's record is gone (expired), which says nothing either way. A subscriber has it once its
   * completion is on the record; on a record older than layout 2, once `pending` no longer names it.
   */
  async undelivered(events: readonly RoutedIds[]): Promise<(string[] | undefined)[]> {
    if (events.length === 0) return []
    const replies = await Promise.all(events.map(({ eventId, subscribers }) =>
      this.redis.hmget(this.keys.event(eventId), 'name', 'v', 'pending', ...subscribers.map((subscriber) => `d:${subscriber}`))))
    return replies.map((reply, index) => {
      const [name, layout, pending, ...completions] = reply
      if (name === null) return undefined
      const { subscribers } = events[index]!
      if (layout !== '2') return pending ? pending.split(',').filter((subscriber) => subscribers.includes(subscriber)) : []
      return subscribers.filter((_, position) => completions[position] === null)
    })
  }

  /** A dead letter keeps its body, for a replay, as long as the dead letter itself is kept. */
  async retain(eventId: string, seconds: number): Promise<void> {
    await this.redis.expire(this.keys.body(eventId), Math.ceil(seconds), 'GT')
  }
}
