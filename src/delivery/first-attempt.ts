import type { RedisClient } from '../store/redis.js'
import type { SubscriberConfig } from '../config/index.js'
import type { StoreKeys } from '../store/keys.js'
import { attempt, type AttemptContext } from './attempt.js'
import type { Outcomes } from './outcomes.js'
import { isQueuePaused, type DeliveryQueue } from './queue.js'
import { waitMs, type RateLimit } from './rate-limit.js'
import type { Slots } from './slots.js'
import type { DeliveryData } from './types.js'

export interface FirstAttemptOptions {
  subscribers: readonly SubscriberConfig[]
  queues: ReadonlyMap<string, DeliveryQueue>
  /** Shared with the subscribers' workers (slots.ts). */
  slots: ReadonlyMap<string, Slots>
  /** Subscribers with SUBSCRIBER_<NAME>_RATE_LIMIT. */
  rateLimits: ReadonlyMap<string, RateLimit>
  /** Not the fan-out's own connection, which spends its time blocked in XREADGROUP. */
  connection: RedisClient
  keys: StoreKeys
  outcomes: Outcomes
  context: AttemptContext
}

export interface RoutedEvent {
  data: DeliveryData
  subscribers: string[]
  /** From the intake stream's entry; an entry older than layout 2 has none (its body has a key). */
  body: string | undefined
  /** The Persona object the event is about, for ordered subscribers. */
  objectId?: string | undefined
}

/** First attempts that one batch of events may make; `take` reserves a subscriber's slot. */
export interface FirstAttemptBatch {
  /** The first attempt of this delivery, holding its slot, or undefined when it must wait in the subscriber's queue. */
  take(subscriber: string, data: DeliveryData): Promise<(() => Promise<void>) | undefined>
}

const NOTHING: FirstAttemptBatch = { take: async () => undefined }

/** How long fan-out waits for a busy subscriber's slot before queueing the delivery instead. */
const SLOT_WAIT_MS = 100
/**
 * The furthest turn under a rate limit a first attempt takes; past it, the delivery waits in its
 * queue instead, where its worker waits for the turn without holding up the intake entry.
 */
const TURN_WAIT_MS = 1000
/**
 * How long a pause flag read is trusted: pauses are rare and an attempt already under way when one
 * comes goes on anyway, so a batch need not ask again every time.
 */
const PAUSE_FLAGS_FOR_MS = 250

/**
 * The first step of every delivery: fan-out attempts it at once, while the subscriber is not paused
 * and has a free slot of its concurrency (slots.ts). Most deliveries succeed the first time, and
 * for them this costs a share of one pipeline of completions (outcomes.ts), where a queue job costs
 * dozens of commands. The attempt is the same step a retry makes (attempt.ts) and its outcome is
 * written by the same module (outcomes.ts): a failed one hands the delivery to its queue, whose
 * worker takes it as the job's first attempt.
 */
export class FirstAttempts {
  private readonly subscribers: ReadonlyMap<string, SubscriberConfig>
  private readonly congested = new Set<string>()
  private pauseFlags: { running: Set<string>; readAt: number } | undefined

  constructor(private readonly options: FirstAttemptOptions) {
    this.subscribers = new Map(options.subscribers.map((subscriber) => [subscriber.name, subscriber]))
  }

  /** A pause or resumption made here is seen by the next batch, not after the flags' time is up. */
  forgetPauseFlags(): void {
    this.pauseFlags = undefined
  }

  /** Reads what the batch needs and its entries lack (pause flags, older entries' bodies), in one round trip. */
  async batch(events: readonly RoutedEvent[]): Promise<FirstAttemptBatch> {
    const { connection, queues, keys, slots } = this.options
    const open = [...new Set(events.flatMap((event) => event.subscribers))].filter((name) => slots.has(name))
    const wanted = events.filter((event) => event.subscribers.some((name) => open.includes(name)))
    if (wanted.length === 0) return NOTHING
    const older = wanted.filter((event) => event.body === undefined)
    const flagsDue = !this.pauseFlags || Date.now() - this.pauseFlags.readAt >= PAUSE_FLAGS_FOR_MS
    // One command per key, which the connection pipelines: on a cluster the keys are on several nodes.
    const [olderBodies, flags] = await Promise.all([
      Promise.all(older.map((event) => connection.get(keys.body(event.data.eventId)))),
      flagsDue ? Promise.all([...this.subscribers.keys()].map((name) => isQueuePaused(connection, queues.get(name)!))) : []
    ])
    const keyed = new Map(older.map((event, index) => [event.data.eventId, olderBodies[index] ?? undefined]))
    if (flagsDue) {
      this.pauseFlags = { running: new Set([...this.subscribers.keys()].filter((_, index) => !flags[index])), readAt: Date.now() }
    }
    const running = this.pauseFlags!.running
    const bodies = new Map(wanted.map((event) => [event.data.eventId, event.body ?? keyed.get(event.data.eventId)]))
    return {
      take: async (name, data) => {
        const body = bodies.get(data.eventId)
        if (!body || !running.has(name) || !(await this.slotOf(name))) return undefined
        const turnInMs = await this.turnOf(name)
        if (turnInMs === undefined) return undefined
        // An older entry's body has a key, which its deliveries hold (`pending`) until they have it.
        return () => this.send(this.subscribers.get(name)!, data, body, keyed.has(data.eventId), turnInMs)
      }
    }
  }

  /**
   * A subscriber that keeps up frees a slot within milliseconds: waiting for it paces fan-out to
   * delivery, where queueing would turn every backlog into jobs. One that does not (slow, or with
   * its queue's worker waiting for slots) is congested: its deliveries join its queue at once, and
   * delay no other subscriber's, until it has a free slot again.
   */
  private async slotOf(name: string): Promise<boolean> {
    const slots = this.options.slots.get(name)!
    if (slots.tryTake()) {
      this.congested.delete(name)
      return true
    }
    if (this.congested.has(name)) return false
    if (await slots.takeWithin(SLOT_WAIT_MS)) return true
    this.congested.add(name)
    return false
  }

  /** The wait for a rate-limited subscriber's turn, with its slot held; undefined (slot released) when too far away. */
  private async turnOf(name: string): Promise<number | undefined> {
    const limit = this.options.rateLimits.get(name)
    if (!limit) return 0
    const wait = await limit.reserve(TURN_WAIT_MS).catch((error: Error) => {
      this.options.slots.get(name)!.release()
      throw error
    })
    if (wait === undefined) this.options.slots.get(name)!.release()
    return wait
  }

  private async send(subscriber: SubscriberConfig, data: DeliveryData, body: string, heldBody: boolean, turnInMs: number): Promise<void> {
    const { outcomes, context } = this.options
    try {
      await waitMs(turnInMs)
      const report = await attempt(subscriber, data, body, 1, context)
      if (report.verdict.kind === 'delivered') await outcomes.delivered(subscriber, data, [report.record], { heldBody })
      else await outcomes.handedOver(subscriber, data, body, report)
    } finally {
      this.options.slots.get(subscriber.name)!.release()
    }
  }
}
