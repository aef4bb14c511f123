import type { FastifyBaseLogger } from 'fastify'
import type { SubscriberConfig } from '../config/index.js'
import type { Completions } from '../store/completions.js'
import type { EventBodies } from '../store/event-bodies.js'
import { repliesOf } from '../store/redis.js'
import { transactionOf, type ScriptedRedis } from '../store/scripts.js'
import { logAttempt } from './attempts.js'
import type { DeliveryJob, DeliveryQueue } from './queue.js'
import { countsTowardsBreaker } from './retry-policy.js'
import type { SubscriberControl } from './subscriber-control.js'
import type { AttemptRecord, AttemptReport, DeliveryData } from './types.js'

export interface OutcomesOptions {
  /** The relay's own connection for transactions, with the scripts defined (store/scripts.ts). */
  redis: ScriptedRedis
  bodies: EventBodies
  completions: Completions
  queues: ReadonlyMap<string, DeliveryQueue>
  controls: ReadonlyMap<string, SubscriberControl>
  jobOptions: (subscriber: string) => object
  /** How long a dead letter is kept, and with it its body. */
  deadLetterRetentionSeconds: number
  log: FastifyBaseLogger
}

/**
 * The one writer of what becomes of a delivery: delivered, queued, handed over after a failed
 * first attempt, a failed retry, a dead letter. Fan-out, the workers and the breaker's probe all
 * come here, so a delivery leaves the same trace whichever step made its attempt
 * (src/delivery/README.md has the state diagram).
 */
export class Outcomes {
  constructor(private readonly options: OutcomesOptions) {}

  /**
   * One transaction: the completion record (every attempt, this one last), the body released if
   * this was the last subscriber to need it, and the breaker's count reset.
   */
  async delivered(subscriber: SubscriberConfig, data: DeliveryData, attempts: AttemptRecord[]): Promise<void> {
    const { redis, bodies, completions, controls } = this.options
    const transaction = transactionOf(redis)
    bodies.queueRelease(transaction, data.eventId, subscriber.name)
    controls.get(subscriber.name)!.queueReset(transaction)
    completions.queueWrite(transaction, subscriber.name, {
      eventId: data.eventId,
      eventName: data.eventName,
      queuedAt: data.receivedAt,
      finishedAt: new Date().toISOString(),
      maxAttempts: subscriber.maxAttempts,
      attempts
    })
    repliesOf(await transaction.exec())
  }

  /** Deliveries that wait in their subscriber's queue for a first attempt (paused, or no free slot). */
  async queued(subscriber: string, deliveries: readonly DeliveryData[]): Promise<void> {
    const { queues, jobOptions } = this.options
    const options = jobOptions(subscriber)
    await queues.get(subscriber)!.addBulk(deliveries.map((data) => ({ name: data.eventName, data, opts: { ...options, jobId: data.eventId } })))
  }

  /**
   * A first attempt that failed becomes its queue's job, carrying the attempt: the worker takes it
   * as the job's first (worker.ts), so that BullMQ counts it and schedules the retry, or
   * dead-letters it when it was a 410 or the only attempt allowed.
   */
  async handedOver(subscriber: SubscriberConfig, data: DeliveryData, report: AttemptReport): Promise<void> {
    const { queues, jobOptions, controls } = this.options
    const retryAfterMs = report.verdict.kind === 'retry' ? report.verdict.retryAfterMs : undefined
    await queues.get(subscriber.name)!.add(
      data.eventName,
      { ...data, firstAttempt: report.record, ...(retryAfterMs !== undefined ? { firstRetryAfterMs: retryAfterMs } : {}) },
      { ...jobOptions(subscriber.name), jobId: data.eventId }
    )
    if (this.isLast(subscriber, report)) await this.keepForDeadLetter(data.eventId)
    if (countsTowardsBreaker(report.result)) await controls.get(subscriber.name)!.recordFailure()
  }

  /** A retry (or a probe) that failed: its line in the history, the breaker's count, and a body kept for a dead letter. */
  async failedAttempt(subscriber: SubscriberConfig, job: DeliveryJob, report: AttemptReport): Promise<void> {
    const { controls } = this.options
    await Promise.all([
      logAttempt(job, report.record),
      countsTowardsBreaker(report.result) && controls.get(subscriber.name)!.recordFailure(),
      this.isLast(subscriber, report, job) && this.keepForDeadLetter(job.data.eventId)
    ])
  }

  /** Routed to a subscriber that is no longer configured, or a dead letter removed: the body is not needed for it. */
  async released(eventId: string, subscriber: string): Promise<void> {
    await this.options.bodies.release(eventId, subscriber)
  }

  /** A probe spends no attempt (the subscriber is paused), so it never makes a dead letter. */
  private isLast(subscriber: SubscriberConfig, report: AttemptReport, job?: DeliveryJob): boolean {
    if (report.record.probe) return false
    return report.verdict.kind === 'gone' || report.record.attempt >= (job?.opts.attempts ?? subscriber.maxAttempts)
  }

  private async keepForDeadLetter(eventId: string): Promise<void> {
    await this.options.bodies.retain(eventId, this.options.deadLetterRetentionSeconds)
  }
}
