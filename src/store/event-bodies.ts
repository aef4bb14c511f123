import type { ChainableCommander, Redis } from 'ioredis'
import { storeKeys, type StoreKeys } from './keys.js'
import { repliesOf } from './redis.js'

/** What a delivery finds when it comes for the body. */
export type BodyLookup =
  | { kind: 'body'; body: string }
  /** This subscriber has it already (an attempt whose completion was cut off by a crash). */
  | { kind: 'settled' }
  /** Neither the body nor a record of it: kept past its retention, it is gone. */
  | { kind: 'expired' }

const LOOKUP_SCRIPT = `
if redis.call('EXISTS', KEYS[1]) == 1 then
  local pending = redis.call('HGET', KEYS[1], 'pending')
  if not pending or not string.find(',' .. pending .. ',', ',' .. ARGV[1] .. ',', 1, true) then return {2} end
end
local body = redis.call('GET', KEYS[2])
if body then return {1, body} end
return {3}
`

// Idempotent: a delivery settled twice (a retried completion) removes its subscriber once. Without
// the record (a dead letter kept past DEDUPE_TTL_SECONDS) other dead letters may still need the
// body, which then lives out its own expiry. KEYS[3…] are the caller's, deleted in the same trip.
const SETTLE_SCRIPT = `
for index = 3, #KEYS do redis.call('DEL', KEYS[index]) end
local pending = redis.call('HGET', KEYS[1], 'pending')
if not pending then return 0 end
local rest = {}
for name in string.gmatch(pending, '[^,]+') do
  if name ~= ARGV[1] then rest[#rest + 1] = name end
end
if #rest == 0 then
  redis.call('HDEL', KEYS[1], 'pending')
  redis.call('DEL', KEYS[2])
else
  redis.call('HSET', KEYS[1], 'pending', table.concat(rest, ','))
end
return 1
`

interface BodyRedis extends Redis {
  lookupBody(eventKey: string, bodyKey: string, subscriber: string): Promise<[number, string?]>
  settleBody(numberOfKeys: number, ...keysThenSubscriber: string[]): Promise<number>
}

interface BodyTransaction extends ChainableCommander {
  settleBody(numberOfKeys: number, ...keysThenSubscriber: string[]): ChainableCommander
}

/**
 * The delivery side of the event body: one copy per event, shared by its deliveries, deleted once
 * the last routed subscriber has it. Persona bodies are personal data; a body no one needs any more
 * does not wait for a retention sweep.
 */
export class EventBodies {
  private readonly keys: StoreKeys
  private readonly redis: BodyRedis

  constructor(redis: Redis, prefix: string) {
    this.keys = storeKeys(prefix)
    if (!('lookupBody' in redis)) {
      redis.defineCommand('lookupBody', { numberOfKeys: 2, lua: LOOKUP_SCRIPT })
      redis.defineCommand('settleBody', { lua: SETTLE_SCRIPT })
    }
    this.redis = redis as BodyRedis
  }

  async lookup(eventId: string, subscriber: string): Promise<BodyLookup> {
    const [kind, body] = await this.redis.lookupBody(this.keys.event(eventId), this.keys.body(eventId), subscriber)
    if (kind === 1) return { kind: 'body', body: body! }
    return kind === 2 ? { kind: 'settled' } : { kind: 'expired' }
  }

  /**
   * The subscriber has the event (or will never be sent it): it no longer holds the body.
   * `alsoDelete` are keys the caller resets in the same round trip (the circuit breaker's count);
   * `alsoWrite` adds the caller's own writes, applied in the same transaction.
   */
  async settle(
    eventId: string,
    subscriber: string,
    alsoDelete: readonly string[] = [],
    alsoWrite?: (transaction: ChainableCommander) => void
  ): Promise<void> {
    const keys = [this.keys.event(eventId), this.keys.body(eventId), ...alsoDelete]
    if (!alsoWrite) {
      await this.redis.settleBody(keys.length, ...keys, subscriber)
      return
    }
    const transaction = this.redis.multi() as BodyTransaction
    transaction.settleBody(keys.length, ...keys, subscriber)
    alsoWrite(transaction)
    repliesOf(await transaction.exec())
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
