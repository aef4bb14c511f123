import type { FastifyBaseLogger } from 'fastify'
import type { RedisClient } from '../store/redis.js'
import type { EventBodies } from '../store/event-bodies.js'
import { objectEvents } from '../store/event-store.js'
import type { StoreKeys } from '../store/keys.js'
import { promoteDelayed, type DeliveryQueue } from './queue.js'

export interface RedactionOptions {
  redis: RedisClient
  keys: StoreKeys
  bodies: EventBodies
  queues: ReadonlyMap<string, DeliveryQueue>
  log: FastifyBaseLogger
}

/**
 * Persona's `<object>.redacted` event, carried out: every body the relay still keeps of the
 * object's earlier events (waiting for a retry, or dead letters) is removed, and their records say
 * so. A delivery that comes for such a body fails as `redacted` and is never sent; its retries,
 * due later, are made due now so that this happens at once. Fan-out runs it for the redaction's
 * intake entry, so a crash before it ends runs it again.
 */
export class Redaction {
  constructor(private readonly options: RedactionOptions) {}

  async redact(objectId: string, redactionEventId: string): Promise<number> {
    const { redis, keys, bodies, queues, log } = this.options
    const earlier = (await objectEvents(redis, keys, objectId)).filter((eventId) => eventId !== redactionEventId)
    const removed = await bodies.redact(earlier)
    await Promise.all([...queues.values()].map((queue) => promoteDelayed(queue, earlier)))
    log.info({ objectId, eventId: redactionEventId, events: earlier.length, bodiesRemoved: removed }, 'event redacted')
    return removed
  }
}
