import { crc32 } from 'node:zlib'
import type { KeyLayout } from '../config/redis.js'

/**
 * Every key the relay owns, under one prefix (src/delivery/README.md lists each with its owner and
 * lifetime). BullMQ's queues share the prefix; their keys are BullMQ's, known only to
 * delivery/queue.ts.
 *
 * A tagged layout (Redis Cluster, or more than one intake partition) wraps in a hash tag what one
 * script or command touches together, so that it is one slot: an event's record, body and intake
 * entry share its partition's tag; a subscriber's state, completions and queue share its name; an
 * ordered lane is a tag of its own. The untagged layout is the one single nodes have always had,
 * with the same strings: an upgrade finds its data where it left it.
 */
export function storeKeys(layout: KeyLayout) {
  const { prefix, partitions, tagged } = layout
  const tag = (name: string) => (tagged ? `{${name}}` : name)
  const partitionOf = (eventId: string) => (partitions === 1 ? 0 : crc32(eventId) % partitions)
  // Untagged there is one partition, and its keys carry no partition in their names.
  const inPartition = (partition: number) => (tagged ? `${prefix}:{i${partition}}` : prefix)
  const allPartitions = Array.from({ length: partitions }, (_, partition) => inPartition(partition))
  return {
    partitions: allPartitions.map((_, partition) => partition),
    partitionOf,
    event: (eventId: string) => `${inPartition(partitionOf(eventId))}:event:${eventId}`,
    /** The body, kept once per event (not per delivery) until every routed subscriber has it. */
    body: (eventId: string) => `${inPartition(partitionOf(eventId))}:body:${eventId}`,
    /** A partition's intake stream, which fan-out reads. */
    intake: (partition: number) => `${inPartition(partition)}:intake`,
    /** A partition's recorded events by when they were received, for as long as their records live: what search reads. */
    received: (partition: number) => `${inPartition(partition)}:received`,
    /** One Persona object's events (`payload.data.id`) in one partition, by created-at: the object index. */
    object: (objectId: string, partition: number) => `${inPartition(partition)}:object:${objectId}`,
    /** One ordered subscriber's lane for one object: who holds it, the newest delivered, who waits. */
    lane: (subscriber: string, objectId: string) => {
      const state = `${prefix}:lane:${tag(`${subscriber}:${objectId}`)}`
      return { state, waiting: `${state}:waiting` }
    },
    /** Completed deliveries of one subscriber: event ids by finish time, and their records. */
    completed: (subscriber: string) => ({
      byTime: `${prefix}:delivered:${tag(subscriber)}`,
      records: `${prefix}:delivered:${tag(subscriber)}:records`
    }),
    /** One subscriber's delivered and failed attempts in one minute (epoch minutes), for the console's chart. */
    activity: (subscriber: string, minute: number) => `${prefix}:activity:${tag(subscriber)}:${minute}`,
    /** One subscriber's pause, circuit breaker, probe and rate-limit state. */
    subscriber: (subscriber: string) => ({
      pause: `${prefix}:subscriber:${tag(subscriber)}:pause`,
      failures: `${prefix}:subscriber:${tag(subscriber)}:failures`,
      probeLock: `${prefix}:subscriber:${tag(subscriber)}:probe-lock`,
      probeTurn: `${prefix}:subscriber:${tag(subscriber)}:probe-turn`,
      /** When its next attempt may start, under SUBSCRIBER_<NAME>_RATE_LIMIT. */
      rate: `${prefix}:subscriber:${tag(subscriber)}:rate`
    }),
    /** The prefix of the subscriber's BullMQ queue, whose keys then share the subscriber's tag. */
    queuePrefix: (subscriber: string) => (tagged ? `${prefix}:{${subscriber}}` : prefix),
    /** The layout the data was written in (store/layout.ts): a different one would not find it. */
    layout: `${prefix}:layout`,
    /** The untagged layout's one stream, which tells the layout of data written before it was recorded. */
    untaggedIntake: `${prefix}:intake`
  }
}

export type StoreKeys = ReturnType<typeof storeKeys>

/**
 * The backfill's keys, apart from storeKeys because only src/backfill uses them. The strings are
 * the ones deployments already hold data under: changing one orphans it. Each is used alone, so
 * none needs a tag.
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
