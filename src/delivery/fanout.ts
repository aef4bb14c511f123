import { hostname } from 'node:os'
import { randomUUID } from 'node:crypto'
import type { RedisClient } from '../store/redis.js'
import type { FastifyBaseLogger } from 'fastify'
import type { EventBodies } from '../store/event-bodies.js'
import { repliesOf } from '../store/redis.js'
import type { FirstAttempts, RoutedEvent } from './first-attempt.js'
import type { Outcomes } from './outcomes.js'
import type { Ordering } from './ordering.js'
import type { Redaction } from './redaction.js'
import type { DeliveryData } from './types.js'

/** The consumer group every relay instance reads the intake stream in. */
export const FANOUT_GROUP = 'fanout'
const BATCH = 256
const BLOCK_MS = 1000
const READ_WINDOW_MS = 5
/** An entry read by a consumer that has not acknowledged it for this long is taken over. */
export const ABANDONED_AFTER_MS = 30_000
const CLAIM_EVERY_MS = 10_000

export interface FanoutOptions {
  /** Dedicated: it spends most of its time blocked in XREADGROUP. */
  connection: RedisClient
  streamKey: string
  /** The subscribers configured here; an event routed to another is released for it. */
  subscribers: ReadonlySet<string>
  /** Tells which subscribers of a taken-over event still need it. */
  bodies: EventBodies
  outcomes: Outcomes
  /** Each delivery's first attempt, where its subscriber has room (first-attempt.ts). */
  firstAttempts: FirstAttempts
  /** Carries out a `<object>.redacted` entry before its own deliveries. */
  redaction: Redaction
  /** Subscribers with SUBSCRIBER_<NAME>_ORDERING=object, and their ordering windows in ms. */
  orderingWindows: ReadonlyMap<string, number>
  ordering: Ordering
  /**
   * Entries whose first attempts end later are acknowledged on this connection: the fan-out's own
   * is blocked in XREADGROUP by then.
   */
  acknowledgeConnection: RedisClient
  log: FastifyBaseLogger
  /** How long an entry may stay unacknowledged by its consumer before another takes it over. */
  abandonedAfterMs?: number
  claimEveryMs?: number
}

type StreamEntry = [id: string, fields: string[]]

/**
 * Turns intake records into deliveries: a first attempt where the subscriber has room
 * (first-attempt.ts), otherwise a job in its queue. Entries are acknowledged and deleted only after
 * every job exists and every first attempt was delivered or handed to its queue; a crash in between
 * replays the entry, and the job id (the event id) makes the replay add nothing twice. Several
 * instances share the work through the consumer group.
 */
export class Fanout {
  private readonly consumer = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`
  private running = false
  private stopping = false
  private groupReady = false
  private loop: Promise<void> | undefined
  private lastClaim = 0
  private readonly abandonedAfterMs: number
  private readonly claimEveryMs: number
  private readonly sending = new Set<Promise<void>>()
  private toAcknowledge: string[] = []
  private acknowledging: Promise<void> | undefined

  constructor(private readonly options: FanoutOptions) {
    this.abandonedAfterMs = options.abandonedAfterMs ?? ABANDONED_AFTER_MS
    this.claimEveryMs = options.claimEveryMs ?? CLAIM_EVERY_MS
  }

  start(): void {
    this.running = true
    this.loop = this.run().finally(() => {
      this.running = false
    })
  }

  isRunning(): boolean {
    return this.running && !this.stopping
  }

  /** Lets the current batch finish; a loop stuck on an unreachable Redis is cut off. */
  async stop(): Promise<void> {
    this.stopping = true
    const finished = await Promise.race([
      this.loop?.then(() => true),
      new Promise<false>((resolve) => setTimeout(() => resolve(false), BLOCK_MS * 2).unref())
    ])
    if (finished) {
      // Each send ends within its subscriber's timeout. Cut off with Redis, they would wait for it;
      // what they leave unacknowledged is taken over later.
      await Promise.all(this.sending)
      await this.acknowledging
      await this.leaveGroup().catch(() => undefined)
      await this.options.connection.quit().catch(() => undefined)
    }
    this.options.connection.disconnect()
    await this.loop
  }

  private async run(): Promise<void> {
    const { connection, streamKey, log } = this.options
    let failures = 0
    while (!this.stopping) {
      try {
        await this.ensureGroup()
        if (Date.now() - this.lastClaim >= this.claimEveryMs) await this.claimAbandoned()
        const reply = (await connection.xreadgroup(
          'GROUP', FANOUT_GROUP, this.consumer, 'COUNT', BATCH, 'BLOCK', BLOCK_MS, 'STREAMS', streamKey, '>'
        )) as [string, StreamEntry[]][] | null
        const entries = reply?.[0]?.[1] ?? []
        if (entries.length > 0) await this.dispatch(entries, true)
        failures = 0
        // A short pause after a part-full batch lets the next few events arrive, so that a steady
        // trickle shares reads, pause checks and acknowledgements instead of paying them each.
        if (entries.length > 0 && entries.length < BATCH) await new Promise((resolve) => setTimeout(resolve, READ_WINDOW_MS))
      } catch (error) {
        if (this.stopping) break
        // A Redis that restarted without its data, or a deleted stream, has lost the group too.
        if ((error as Error).message.includes('NOGROUP')) this.groupReady = false
        failures += 1
        log.warn({ err: { message: (error as Error).message }, failures }, 'fan-out failed; retrying')
        await new Promise((resolve) => setTimeout(resolve, Math.min(100 * 2 ** failures, 2000)))
      }
    }
  }

  private async ensureGroup(): Promise<void> {
    if (this.groupReady) return
    try {
      await this.options.connection.xgroup('CREATE', this.options.streamKey, FANOUT_GROUP, '0', 'MKSTREAM')
    } catch (error) {
      if (!(error as Error).message.includes('BUSYGROUP')) throw error
    }
    this.groupReady = true
  }

  private async claimAbandoned(): Promise<void> {
    const { connection, streamKey } = this.options
    let cursor = '0-0'
    do {
      const [next, entries, deleted] = (await connection.xautoclaim(
        streamKey, FANOUT_GROUP, this.consumer, this.abandonedAfterMs, cursor, 'COUNT', BATCH
      )) as [string, StreamEntry[], string[]]
      if (entries.length > 0) await this.dispatch(entries, false)
      if (deleted.length > 0) await connection.xack(streamKey, FANOUT_GROUP, ...deleted)
      cursor = next
    } while (cursor !== '0-0')
    this.lastClaim = Date.now()
  }

  /**
   * `fresh` entries are read for the first time and may be attempted at once; taken-over ones may
   * have reached some subscribers already, so the others get jobs (skipDelivered).
   */
  private async dispatch(entries: StreamEntry[], fresh: boolean): Promise<void> {
    const { connection, streamKey, subscribers: configured, outcomes, log, firstAttempts } = this.options
    const records = entries.map(([, fields]) => fieldsToRecord(fields))
    for (const record of records) if (record.redacts) await this.options.redaction.redact(record.redacts, record.id ?? '')
    const events = records.map(toRoutedEvent)
    if (!fresh) await this.skipDelivered(events)
    const batch = fresh ? await firstAttempts.batch(events) : undefined
    const queuedBySubscriber = new Map<string, { data: DeliveryData; body: string }[]>()
    // Ordered deliveries are always jobs, due once their subscriber's ordering window has passed.
    const orderedBySubscriber = new Map<string, { data: DeliveryData; body: string }[]>()
    const released: Promise<void>[] = []
    const acknowledgeNow: string[] = []
    // Sends start as soon as they hold a slot, before the batch's jobs are added; an entry is
    // acknowledged once both are done, and never if its jobs could not all be added: it is taken
    // over later, and its jobs added then.
    let jobsAdded!: (added: boolean) => void
    const queued = new Promise<boolean>((resolve) => (jobsAdded = resolve))
    for (const [index, [streamId]] of entries.entries()) {
      const { data, subscribers, body, objectId } = events[index]!
      const sends: Promise<void>[] = []
      for (const subscriber of subscribers) {
        if (!configured.has(subscriber)) {
          log.warn({ subscriber, eventId: data.eventId }, 'event routed to a subscriber that is no longer configured; skipped')
          const release = outcomes.released(data.eventId, subscriber)
          // Awaited with the jobs below; it may fail while this loop still waits for a slot.
          release.catch(() => undefined)
          released.push(release)
          continue
        }
        if (objectId && this.options.orderingWindows.has(subscriber)) {
          const ordered = orderedBySubscriber.get(subscriber) ?? []
          // Only an ordered delivery carries its object's id: the others' jobs need not know it.
          ordered.push({ data: { ...data, objectId }, body: body ?? '' })
          orderedBySubscriber.set(subscriber, ordered)
          continue
        }
        const send = await batch?.take(subscriber, data)
        if (send) {
          const sending = send()
          // Handled by track() once the entry's other deliveries are placed, maybe after this fails.
          sending.catch(() => undefined)
          sends.push(sending)
          continue
        }
        const queued = queuedBySubscriber.get(subscriber) ?? []
        queued.push({ data, body: body ?? '' })
        queuedBySubscriber.set(subscriber, queued)
      }
      if (sends.length > 0) this.track(streamId, sends, queued)
      else acknowledgeNow.push(streamId)
    }
    try {
      await Promise.all([
        ...[...queuedBySubscriber].map(([subscriber, queued]) => outcomes.queued(subscriber, queued)),
        ...[...orderedBySubscriber].map(async ([subscriber, ordered]) => {
          await this.options.ordering.enqueue(subscriber, ordered.map(({ data }) => data))
          await outcomes.queued(subscriber, ordered, this.options.orderingWindows.get(subscriber))
        }),
        ...released
      ])
      jobsAdded(true)
    } catch (error) {
      jobsAdded(false)
      throw error
    }
    if (acknowledgeNow.length > 0) await acknowledge(connection, streamKey, acknowledgeNow)
  }

  /**
   * A taken-over entry may have reached some subscribers already (first attempts completed before a
   * crash): they get no job, which would complete unsent and hide the delivery's record.
   */
  private async skipDelivered(events: RoutedEvent[]): Promise<void> {
    const pending = await this.options.bodies.undelivered(events.map((event) => ({ eventId: event.data.eventId, subscribers: event.subscribers })))
    events.forEach((event, index) => {
      const waiting = pending[index]
      if (waiting) event.subscribers = event.subscribers.filter((subscriber) => waiting.includes(subscriber))
    })
  }

  private track(streamId: string, sends: Promise<void>[], queued: Promise<boolean>): void {
    const sending = Promise.all([queued, ...sends]).then(
      ([added]) => {
        if (added) this.acknowledgeSoon(streamId)
      },
      (error: Error) => {
        // Left unacknowledged, the entry is taken over once abandoned, and delivered through jobs.
        this.options.log.warn({ err: { message: error.message } }, 'a first attempt could not be completed or handed over; the event will be re-queued')
      }
    )
    this.sending.add(sending)
    void sending.finally(() => this.sending.delete(sending))
  }

  /** Entries whose sends ended in the same turn share one acknowledgement. */
  private acknowledgeSoon(streamId: string): void {
    this.toAcknowledge.push(streamId)
    this.acknowledging ??= new Promise((resolve) => setImmediate(resolve)).then(async () => {
      const ids = this.toAcknowledge
      this.toAcknowledge = []
      this.acknowledging = undefined
      await acknowledge(this.options.acknowledgeConnection, this.options.streamKey, ids).catch((error: Error) =>
        this.options.log.warn({ err: { message: error.message } }, 'acknowledging delivered intake entries failed; they will be taken over and skipped')
      )
    })
  }

  private async leaveGroup(): Promise<void> {
    const { connection, streamKey } = this.options
    // Removing a consumer drops its pending entries, so only one that holds none may go.
    const pending = (await connection.xpending(streamKey, FANOUT_GROUP, '-', '+', 1, this.consumer)) as unknown[]
    if (pending.length === 0) await connection.xgroup('DELCONSUMER', streamKey, FANOUT_GROUP, this.consumer)
  }
}

/**
 * Deleted, then acknowledged: an entry deleted but left pending by a crash in between is
 * acknowledged by the next take-over (claimAbandoned), which reports it as deleted; the other order
 * could leave an acknowledged entry, body and all, in the stream for good.
 */
async function acknowledge(connection: RedisClient, streamKey: string, ids: readonly string[]): Promise<void> {
  repliesOf(await connection.pipeline().xdel(streamKey, ...ids).xack(streamKey, FANOUT_GROUP, ...ids).exec())
}

function toRoutedEvent(record: Record<string, string>): RoutedEvent {
  return {
    data: {
      eventId: record.id ?? '',
      eventName: record.name ?? '',
      createdAt: record.createdAt ?? '',
      receivedAt: record.receivedAt ?? '',
      source: record.source ?? 'webhook',
      ...(record.traceparent ? { traceparent: record.traceparent } : {})
    },
    objectId: record.objectId,
    // A redaction no subscriber wants is queued with none, for fan-out to carry out.
    subscribers: (record.subscribers ?? '').split(',').filter(Boolean),
    body: record.body
  }
}

function fieldsToRecord(fields: string[]): Record<string, string> {
  const record: Record<string, string> = {}
  for (let index = 0; index + 1 < fields.length; index += 2) record[fields[index]!] = fields[index + 1]!
  return record
}
