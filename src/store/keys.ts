/**
 * Every key the relay owns, under one prefix (src/delivery/README.md lists each with its owner and
 * lifetime). BullMQ's queues share the prefix; their keys are BullMQ's, known only to
 * delivery/queue.ts.
 */
export function storeKeys(prefix: string) {
  return {
    event: (eventId: string) => `${prefix}:event:${eventId}`,
    /** The body, kept once per event (not per delivery) until every routed subscriber has it. */
    body: (eventId: string) => `${prefix}:body:${eventId}`,
    intake: `${prefix}:intake`,
    /** Every recorded event's id by when it was received, for as long as its record lives: what search reads. */
    received: `${prefix}:received`,
    /** One Persona object's events (`payload.data.id`), by created-at: the object index. */
    object: (objectId: string) => `${prefix}:object:${objectId}`,
    /** One ordered subscriber's lane for one object: who holds it, the newest delivered, who waits. */
    lane: (subscriber: string, objectId: string) => ({
      state: `${prefix}:lane:${subscriber}:${objectId}`,
      waiting: `${prefix}:lane:${subscriber}:${objectId}:waiting`
    }),
    /** Completed deliveries of one subscriber: event ids by finish time, and their records. */
    completed: (subscriber: string) => ({
      byTime: `${prefix}:delivered:${subscriber}`,
      records: `${prefix}:delivered:${subscriber}:records`
    }),
    /** One subscriber's delivered and failed attempts in one minute (epoch minutes), for the console's chart. */
    activity: (subscriber: string, minute: number) => `${prefix}:activity:${subscriber}:${minute}`,
    /** One subscriber's pause, circuit breaker, probe and rate-limit state. */
    subscriber: (subscriber: string) => ({
      pause: `${prefix}:subscriber:${subscriber}:pause`,
      failures: `${prefix}:subscriber:${subscriber}:failures`,
      probeLock: `${prefix}:subscriber:${subscriber}:probe-lock`,
      probeTurn: `${prefix}:subscriber:${subscriber}:probe-turn`,
      /** When its next attempt may start, under SUBSCRIBER_<NAME>_RATE_LIMIT. */
      rate: `${prefix}:subscriber:${subscriber}:rate`
    })
  }
}

export type StoreKeys = ReturnType<typeof storeKeys>

/**
 * The backfill's keys, apart from storeKeys because only src/backfill uses them. The strings are
 * the ones deployments already hold data under: changing one orphans it.
 */
export function backfillKeys(prefix: string) {
  return {
    /** Held by the instance running a backfill, so that only one runs across all of them. */
    lock: `${prefix}:backfill:lock`,
    /** One backfill's record, readable by every instance while it runs and for a while after. */
    job: (id: string) => `${prefix}:backfill:job:${id}`,
    /** Creation time of the newest event a scheduled run saw: where the next one starts. */
    newest: `${prefix}:backfill:newest`
  }
}
