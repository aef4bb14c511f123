import { UnrecoverableError, Worker } from 'bullmq'
import type { Redis } from 'ioredis'
import type { SubscriberConfig } from '../config/index.js'
import type { EventBodies } from '../store/event-bodies.js'
import { attempt, type AttemptContext } from './attempt.js'
import { logAttempt } from './attempts.js'
import type { Outcomes } from './outcomes.js'
import { attemptsMade, firstAttemptPending, jobHistory, queueName, type DeliveryJob, type DeliveryQueue } from './queue.js'
import { retryDelayMs } from './retry-schedule.js'
import type { Slots } from './slots.js'
import type { AttemptResult, AttemptVerdict } from './types.js'

/** Thrown for an attempt that did not end in a 2xx, so that BullMQ schedules the next one. */
export class DeliveryAttemptError extends Error {
  constructor(readonly result: Pick<AttemptResult, 'status' | 'errorClass'>, readonly retryAfterMs?: number) {
    super(result.status !== undefined ? `subscriber answered HTTP ${result.status}` : `delivery failed: ${result.errorClass}`)
    this.name = 'DeliveryAttemptError'
  }
}

/** The failed reason of a delivery ended by a 410; the admin API reports it as reason `gone`. */
export const GONE_REASON = 'gone: subscriber answered 410'
/** The failed reason of a delivery whose body outlived its retention before it could be sent. */
export const EXPIRED_REASON = 'expired: the event body is no longer kept'

export interface RetryWorkerOptions extends AttemptContext {
  subscriber: SubscriberConfig
  queue: DeliveryQueue
  connection: Redis
  prefix: string
  bodies: EventBodies
  outcomes: Outcomes
  /** The subscriber's concurrency in this process, shared with fan-out's first attempts. */
  slots: Slots
}

type Step = 'delivered' | 'failed' | 'settled'

/**
 * A queued delivery's next attempt, made by the subscriber's worker or by the breaker's probe: the
 * same step as fan-out's first attempt (attempt.ts), its outcome written by outcomes.ts.
 */
async function attemptJob(options: RetryWorkerOptions, job: DeliveryJob, probe: boolean): Promise<{ step: Step; error?: Error }> {
  const { subscriber, queue, bodies, outcomes } = options
  const lookup = await bodies.lookup(job.data.eventId, subscriber.name)
  // Delivered already, by an attempt whose job was cut off before it completed.
  if (lookup.kind === 'settled') return { step: 'settled' }
  if (lookup.kind === 'expired') return { step: 'failed', error: new UnrecoverableError(EXPIRED_REASON) }
  // A probe may come to a handed-over job before its worker took the first attempt as its own.
  const attemptNumber = attemptsMade(job) + 1
  const report = await attempt(subscriber, job.data, lookup.body, attemptNumber, options, probe)
  if (report.verdict.kind === 'delivered') {
    await outcomes.delivered(subscriber, job.data, [...(await jobHistory(queue, job)), report.record], { heldBody: true })
    return { step: 'delivered' }
  }
  await outcomes.failedAttempt(subscriber, job, report)
  return { step: 'failed', error: failureOf(report.result, report.verdict) }
}

/** What BullMQ is told of a failed attempt: a 410 ends the delivery, anything else is retried. */
function failureOf(result: Pick<AttemptResult, 'status' | 'errorClass'>, verdict: AttemptVerdict): Error {
  if (verdict.kind === 'gone') return new UnrecoverableError(GONE_REASON)
  return new DeliveryAttemptError(result, verdict.kind === 'retry' ? verdict.retryAfterMs : undefined)
}

/**
 * The breaker's probe of one waiting delivery. Delivered now or before, the job is removed: its
 * completion is recorded, and it must not be sent again when the queue resumes.
 */
export function probeAttempt(options: RetryWorkerOptions) {
  return async (job: DeliveryJob): Promise<Step> => {
    const { step } = await attemptJob(options, job, true)
    if (step !== 'failed') await job.remove()
    return step
  }
}

export function createRetryWorker(options: RetryWorkerOptions) {
  const { subscriber, connection, prefix, slots } = options
  const processor = async (job: DeliveryJob) => {
    // Fan-out made the first attempt (outcomes.handedOver): it is this job's first, logged, counted
    // and scheduled by BullMQ like any other, without being sent again.
    const { firstAttempt, firstVerdict } = job.data
    if (firstAttempt && firstVerdict && firstAttemptPending(job)) {
      await logAttempt(job, firstAttempt)
      throw failureOf(firstAttempt, firstVerdict)
    }
    const { error } = await slots.run(() => attemptJob(options, job, false))
    if (error) throw error
  }

  return new Worker(queueName(subscriber.name), processor, {
    connection,
    prefix,
    concurrency: subscriber.concurrency,
    // A lock shorter than the slowest attempt would let a second worker take a delivery still in
    // flight; a crashed worker's deliveries return to the queue once it expires (config/index.ts).
    lockDuration: subscriber.lockDurationMs,
    stalledInterval: subscriber.stalledIntervalMs,
    settings: {
      backoffStrategy: (attemptsMade: number, _type?: string, error?: Error) =>
        error instanceof DeliveryAttemptError && error.retryAfterMs !== undefined
          ? error.retryAfterMs
          : retryDelayMs(subscriber.retrySchedule, attemptsMade)
    }
  })
}
