import type { Redis } from 'ioredis'
import { storeKeys, type StoreKeys } from './keys.js'
import { repliesOf } from './redis.js'
import { withScripts, type ScriptedRedis, type ScriptedTransaction } from './scripts.js'

/** What a delivery finds when it comes for the body. */
export type BodyLookup =
  | { kind: 'body'; body: string }
  /** This subscriber has it already (an attempt whose completion was cut off by a crash). */
  | { kind: 'settled' }
  /** Neither the body nor a record of it: kept past its retention, it is gone. */
  | { kind: 'expired' }

/**
 * The delivery side of the event body: one copy per event, shared by its deliveries, deleted once
 * the last routed subscriber has it. Persona bodies are personal data; a body no one needs any more
 * does not wait for a retention sweep.
 */
export class EventBodies {
  private readonly keys: StoreKeys
  private readonly redis: ScriptedRedis

  constructor(redis: Redis, prefix: string) {
    this.keys = storeKeys(prefix)
    this.redis = withScripts(redis)
  }

  async lookup(eventId: string, subscriber: string): Promise<BodyLookup> {
    const [kind, body] = (await this.redis.lookupBody(this.keys.event(eventId), this.keys.body(eventId), subscriber)) as [number, string?]
    if (kind === 1) return { kind: 'body', body: body! }
    return kind === 2 ? { kind: 'settled' } : { kind: 'expired' }
  }

  /** The subscriber has the event, or will never be sent it: it no longer holds the body. */
  async release(eventId: string, subscriber: string): Promise<void> {
    await this.redis.releaseBody(this.keys.event(eventId), this.keys.body(eventId), subscriber)
  }

  /** The same release, as one step of the caller's transaction (the completion of a delivery). */
  queueRelease(transaction: ScriptedTransaction, eventId: string, subscriber: string): void {
    transaction.releaseBody(this.keys.event(eventId), this.keys.body(eventId), subscriber)
  }

  /**
   * The subscribers that do not have each event yet, in one round trip; undefined where the event's
   * record is gone (expired), which says nothing either way.
   */
  async pending(eventIds: readonly string[]): Promise<(string[] | undefined)[]> {
    if (eventIds.length === 0) return []
    const pipeline = this.redis.pipeline()
    for (const eventId of eventIds) pipeline.hmget(this.keys.event(eventId), 'name', 'pending')
    return repliesOf(await pipeline.exec()).map((reply) => {
      const [name, pending] = reply as [string | null, string | null]
      if (name === null) return undefined
      return pending ? pending.split(',') : []
    })
  }

  /** A dead letter keeps its body, for a replay, as long as the dead letter itself is kept. */
  async retain(eventId: string, seconds: number): Promise<void> {
    await this.redis.expire(this.keys.body(eventId), Math.ceil(seconds), 'GT')
  }
}
