import type { Redis } from 'ioredis'
import type { SubscriberConfig } from '../config/index.js'
import type { StoreKeys } from '../store/keys.js'
import { repliesOf } from '../store/redis.js'
import { attempt, type AttemptContext } from './attempt.js'
import type { Outcomes } from './outcomes.js'
import { queuePausedFlag, type DeliveryQueue } from './queue.js'
import type { Slots } from './slots.js'
import type { DeliveryData } from './types.js'

export interface FirstAttemptOptions {
  subscribers: readonly SubscriberConfig[]
  queues: ReadonlyMap<string, DeliveryQueue>
  /** Shared with the subscribers' workers (slots.ts). */
  slots: ReadonlyMap<string, Slots>
  /** Not the fan-out's own connection, which spends its time blocked in XREADGROUP. */
  connection: Redis
  keys: StoreKeys
  outcomes: Outcomes
  context: AttemptContext
}

export interface RoutedEvent {
  data: DeliveryData
  subscribers: string[]
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
 * The first step of every delivery: fan-out attempts it at once, while the subscriber is not paused
 * and has a free slot of its concurrency (slots.ts). Most deliveries succeed the first time, and
 * for them this costs one read (shared by the batch) and one transaction, where a queue job costs
 * dozens of commands. The attempt is the same step a retry makes (attempt.ts) and its outcome is
 * written by the same module (outcomes.ts): a failed one hands the delivery to its queue, whose
 * worker takes it as the job's first attempt.
 */
export class FirstAttempts {
  private readonly subscribers: ReadonlyMap<string, SubscriberConfig>
  private readonly congested = new Set<string>()

  constructor(private readonly options: FirstAttemptOptions) {
    this.subscribers = new Map(options.subscribers.map((subscriber) => [subscriber.name, subscriber]))
  }

  /** Reads the bodies and pause flags the batch needs, in one round trip. */
  async batch(events: readonly RoutedEvent[]): Promise<FirstAttemptBatch> {
    const { connection, queues, keys } = this.options
    const open = [...new Set(events.flatMap((event) => event.subscribers))].filter((name) => this.options.slots.has(name))
    const wanted = events.filter((event) => event.subscribers.some((name) => open.includes(name)))
    if (wanted.length === 0) return NOTHING
    const pipeline = connection.pipeline().mget(...wanted.map((event) => keys.body(event.data.eventId)))
    for (const name of open) queuePausedFlag(pipeline, queues.get(name)!)
    const [storedBodies, ...pausedFlags] = repliesOf(await pipeline.exec())
    const bodies = new Map(wanted.map((event, index) => [event.data.eventId, (storedBodies as (string | null)[])[index]]))
    const running = new Set(open.filter((_, index) => pausedFlags[index] === 0))
    return {
      take: async (name, data) => {
        const body = bodies.get(data.eventId)
        if (!body || !running.has(name) || !(await this.slotOf(name))) return undefined
        return () => this.send(this.subscribers.get(name)!, data, body)
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

  private async send(subscriber: SubscriberConfig, data: DeliveryData, body: string): Promise<void> {
    const { outcomes, context } = this.options
    try {
      const report = await attempt(subscriber, data, body, 1, context)
      if (report.verdict.kind === 'delivered') await outcomes.delivered(subscriber, data, [report.record])
      else await outcomes.handedOver(subscriber, data, report)
    } finally {
      this.options.slots.get(subscriber.name)!.release()
    }
  }
}
