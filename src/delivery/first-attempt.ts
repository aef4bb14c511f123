import type { Queue } from 'bullmq'
import type { Redis } from 'ioredis'
import type { SubscriberConfig } from '../config/index.js'
import { repliesOf } from '../store/redis.js'
import type { DeliveredRecords } from './delivered-records.js'
import type { DeliveryJobData } from './job.js'
import type { Slots } from './slots.js'
import type { SubscriberControl } from './subscriber-control.js'
import { sendAttempt, type DeliveryContext } from './worker.js'

export interface ImmediateOptions {
  subscribers: readonly SubscriberConfig[]
  queues: ReadonlyMap<string, Queue<DeliveryJobData>>
  controls: ReadonlyMap<string, SubscriberControl>
  /** Shared with the subscribers' workers (slots.ts). */
  slots: ReadonlyMap<string, Slots>
  jobOptions: (subscriber: string) => object
  /** Not the fan-out's own connection, which spends its time blocked in XREADGROUP. */
  connection: Redis
  bodyKey: (eventId: string) => string
  delivered: DeliveredRecords
  context: DeliveryContext
}

export interface RoutedEvent {
  data: DeliveryJobData
  subscribers: string[]
}

/** Sends that one batch of events may make at once; `take` reserves a subscriber's slot. */
export interface ImmediateBatch {
  /** The send of this delivery, holding its slot, or undefined when it must go through the subscriber's queue. */
  take(subscriber: string, data: DeliveryJobData): Promise<(() => Promise<void>) | undefined>
}

const NOTHING: ImmediateBatch = { take: async () => undefined }

/** How long fan-out waits for a busy subscriber's slot before queueing the delivery instead. */
const SLOT_WAIT_MS = 100

/**
 * The first attempt of a delivery, made by fan-out itself instead of through a BullMQ job, while
 * the subscriber is not paused and has a free slot of its concurrency (slots.ts). A BullMQ job
 * costs dozens of Redis commands and several scripts; most deliveries succeed the first time, and
 * for them this path costs one read (shared by the batch) and one transaction. A delivery that
 * fails is handed to its queue with the attempt attached (the worker records it as the job's first
 * attempt and schedules the retry), so retries, the breaker and dead letters work as for any job.
 * Until every immediate attempt of an event has been delivered or handed over, its intake entry
 * stays unacknowledged: a crash re-queues the event through the normal path, where subscribers
 * that already have it are skipped (event-bodies.ts).
 */
export class ImmediateDelivery {
  private readonly subscribers: ReadonlyMap<string, SubscriberConfig>
  private readonly congested = new Set<string>()

  constructor(private readonly options: ImmediateOptions) {
    this.subscribers = new Map(options.subscribers.map((subscriber) => [subscriber.name, subscriber]))
  }

  /** Reads the bodies and pause flags the batch needs, in one round trip. */
  async batch(events: readonly RoutedEvent[]): Promise<ImmediateBatch> {
    const { connection, queues, bodyKey } = this.options
    const open = [...new Set(events.flatMap((event) => event.subscribers))].filter((name) => this.options.slots.has(name))
    const wanted = events.filter((event) => event.subscribers.some((name) => open.includes(name)))
    if (wanted.length === 0) return NOTHING
    const pipeline = connection.pipeline().mget(...wanted.map((event) => bodyKey(event.data.eventId)))
    for (const name of open) pipeline.hexists(queues.get(name)!.keys.meta!, 'paused')
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

  private async send(subscriber: SubscriberConfig, data: DeliveryJobData, body: string): Promise<void> {
    const { queues, controls, jobOptions, delivered, context } = this.options
    try {
      const report = await sendAttempt(subscriber, data, body, 1, context)
      if (report.verdict.kind === 'delivered') {
        await context.bodies.settle(data.eventId, subscriber.name, [controls.get(subscriber.name)!.failuresKey], (transaction) =>
          delivered.write(transaction, subscriber.name, {
            eventId: data.eventId,
            eventName: data.eventName,
            queuedAt: data.receivedAt,
            finishedAt: new Date().toISOString(),
            maxAttempts: subscriber.maxAttempts,
            attempt: report.record
          })
        )
        return
      }
      await queues.get(subscriber.name)!.add(
        data.eventName,
        { ...data, immediateAttempt: report },
        { ...jobOptions(subscriber.name), jobId: data.eventId }
      )
    } finally {
      this.options.slots.get(subscriber.name)!.release()
    }
  }
}
