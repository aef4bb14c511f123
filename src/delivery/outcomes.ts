import type { SubscriberConfig } from '../config/index.js'
import type { Completion, Completions } from '../store/completions.js'
import type { RelayMetrics } from '../ops/metrics.js'
import type { EventBodies } from '../store/event-bodies.js'
import type { ReplicaWait } from '../store/event-store.js'
import type { StoreKeys } from '../store/keys.js'
import type { ScriptedRedis } from '../store/scripts.js'
import { logAttempt } from './attempts.js'
import { confirmReplicas, type DeliveryJob, type DeliveryQueue } from './queue.js'
import { countsTowardsBreaker } from './retry-policy.js'
import type { SubscriberControl } from './subscriber-control.js'
import type { AttemptRecord, AttemptReport, DeliveryData, SkipReason } from './types.js'

export interface OutcomesOptions {
  /** The relay's own connection for its pipelines, with the scripts defined (store/scripts.ts). */
  redis: ScriptedRedis
  bodies: EventBodies
  completions: Completions
  queues: ReadonlyMap<string, DeliveryQueue>
  controls: ReadonlyMap<string, SubscriberControl>
  jobOptions: (subscriber: string) => object
  /** How long a dead letter is kept, and with it its body. */
  deadLetterRetentionSeconds: number
  keys: StoreKeys
  metrics: RelayMetrics
  /** REDIS_WAIT_REPLICAS: new jobs reach the replicas before the intake entry that made them goes. */
  replicaWait: ReplicaWait
}

interface PendingCompletion extends Completion {
  done: () => void
  failed: (error: Error) => void
}

/**
 * Completions that end within this long of each other share one pipeline: an event's deliveries
 * to several subscribers, answered at once, then cost one write for the event and one index entry
 * per subscriber, and a burst's deliveries one reset of each breaker.
 */
const COMPLETION_WINDOW_MS = 2

/**
 * The one writer of what becomes of a delivery: delivered, queued, handed over after a failed
 * first attempt, a failed retry, a dead letter. Fan-out, the workers and the breaker's probe all
 * come here, so a delivery leaves the same trace whichever step made its attempt
 * (src/delivery/README.md has the state diagram).
 */
export class Outcomes {
  private completing: PendingCompletion[] = []

  constructor(private readonly options: OutcomesOptions) {}

  /**
   * The completion record (every attempt, this one last), the breaker's count reset, and for a
   * delivery that held the body key, its release. Resolves once they are written.
   */
  delivered(subscriber: SubscriberConfig, data: DeliveryData, attempts: AttemptRecord[], { heldBody }: { heldBody: boolean }): Promise<void> {
    const record = {
      eventId: data.eventId,
      eventName: data.eventName,
      queuedAt: data.receivedAt,
      finishedAt: new Date().toISOString(),
      maxAttempts: subscriber.maxAttempts,
      attempts
    }
    return new Promise((done, failed) => {
      if (this.completing.length === 0) setTimeout(() => this.flushCompletions(), COMPLETION_WINDOW_MS)
      this.completing.push({ subscriber: subscriber.name, record, heldBody, done, failed })
    })
  }

  private flushCompletions(): void {
    const batch = this.completing
    this.completing = []
    const { completions, controls } = this.options
    Promise.all([
      completions.write(batch, this.options.bodies),
      ...[...new Set(batch.map((completion) => completion.subscriber))].map((subscriber) => controls.get(subscriber)!.resetFailures())
    ]).then(
      () => { for (const { done } of batch) done() },
      (error: Error) => { for (const { failed } of batch) failed(error) }
    )
  }

  /**
   * Deliveries that wait in their subscriber's queue for a first attempt (paused, no free slot, or
   * ordered: due `delayMs` from now, the subscriber's ordering window).
   */
  async queued(subscriber: string, deliveries: readonly { data: DeliveryData; body: string }[], delayMs = 0): Promise<void> {
    const { queues, jobOptions, bodies } = this.options
    const options = delayMs > 0 ? { ...jobOptions(subscriber), delay: delayMs } : jobOptions(subscriber)
    await bodies.holdAll(subscriber, deliveries.map(({ data, body }) => ({ eventId: data.eventId, body })))
    const queue = queues.get(subscriber)!
    await queue.addBulk(deliveries.map(({ data }) => ({ name: data.eventName, data, opts: { ...options, jobId: data.eventId } })))
    await confirmReplicas(queue, this.options.replicaWait)
  }

  /**
   * A first attempt that failed becomes its queue's job, carrying the attempt: the worker takes it
   * as the job's first (worker.ts), so that BullMQ counts it and schedules the retry, or
   * dead-letters it when it was a 410 or the only attempt allowed.
   */
  async handedOver(subscriber: SubscriberConfig, data: DeliveryData, body: string, report: AttemptReport): Promise<void> {
    const { queues, jobOptions, bodies } = this.options
    await bodies.holdAll(subscriber.name, [{ eventId: data.eventId, body }])
    const queue = queues.get(subscriber.name)!
    await queue.add(
      data.eventName,
      { ...data, firstAttempt: report.record, firstVerdict: report.verdict },
      { ...jobOptions(subscriber.name), jobId: data.eventId }
    )
    await confirmReplicas(queue, this.options.replicaWait)
    await this.failed(subscriber, data.eventId, report, subscriber.maxAttempts)
  }

  /**
   * A retry (or a probe) that failed: its line in the history, and what every failed attempt costs.
   * True when it was the last: the delivery becomes a dead letter.
   */
  async failedAttempt(subscriber: SubscriberConfig, job: DeliveryJob, report: AttemptReport): Promise<boolean> {
    const [, last] = await Promise.all([logAttempt(job, report.record), this.failed(subscriber, job.data.eventId, report, job.opts.attempts ?? subscriber.maxAttempts)])
    return last
  }

  /** An ordered delivery older than one already delivered for its object, under SUBSCRIBER_<NAME>_STALE=skip: never sent. */
  async skipped(subscriber: SubscriberConfig, data: DeliveryData, reason: SkipReason): Promise<void> {
    const { redis, bodies, keys, metrics } = this.options
    await redis.hset(keys.event(data.eventId), `skip:${subscriber.name}`, reason)
    await bodies.release(data.eventId, subscriber.name)
    metrics.skipped(subscriber.name, reason)
  }

  /** The breaker's count, and the body kept for a dead letter when this was the last attempt. */
  private async failed(subscriber: SubscriberConfig, eventId: string, report: AttemptReport, maxAttempts: number): Promise<boolean> {
    const { controls, bodies, deadLetterRetentionSeconds } = this.options
    // A probe spends no attempt (the subscriber is paused), so it never makes a dead letter.
    const last = !report.record.probe && (report.verdict.kind === 'gone' || report.record.attempt >= maxAttempts)
    await Promise.all([
      countsTowardsBreaker(report.result) && controls.get(subscriber.name)!.recordFailure(),
      last && bodies.retain(eventId, deadLetterRetentionSeconds)
    ])
    return last
  }

  /** Routed to a subscriber that is no longer configured, or a dead letter removed: the body is not needed for it. */
  async released(eventId: string, subscriber: string): Promise<void> {
    await this.options.bodies.release(eventId, subscriber)
  }
}
