import { DelayedError, UnrecoverableError, Worker, type Telemetry } from 'bullmq'
import type { RedisClient } from '../store/redis.js'
import type { SubscriberConfig } from '../config/index.js'
import type { EventBodies } from '../store/event-bodies.js'
import { attempt, type AttemptContext } from './attempt.js'
import { logAttempt } from './attempts.js'
import type { Outcomes } from './outcomes.js'
import { isOrdered, type LaneTurn, type Ordering } from './ordering.js'
import { attemptsMade, firstAttemptPending, jobHistory, promoteIfDue, queueName, type DeliveryJob, type DeliveryQueue } from './queue.js'
import { retryDelayMs } from './retry-schedule.js'
import type { RateLimit } from './rate-limit.js'
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
/** The failed reason of a delivery whose body was removed when Persona redacted its object (redaction.ts). */
export const REDACTED_REASON = 'redacted: Persona redacted the object, and its body was removed'

export interface RetryWorkerOptions extends AttemptContext {
  subscriber: SubscriberConfig
  queue: DeliveryQueue
  connection: RedisClient
  prefix: string
  /** bullmq-otel, with tracing configured: a span per job processed. */
  telemetry: Telemetry | undefined
  bodies: EventBodies
  outcomes: Outcomes
  /** The subscriber's concurrency in this process, shared with fan-out's first attempts. */
  slots: Slots
  /** SUBSCRIBER_<NAME>_RATE_LIMIT, shared with fan-out's first attempts and every instance. */
  rateLimit: RateLimit | undefined
  /** The lanes of SUBSCRIBER_<NAME>_ORDERING=object. */
  ordering: Ordering
}

/** `waiting`: an ordered delivery whose turn in its object's lane has not come; nothing was sent. */
type Step = 'delivered' | 'failed' | 'settled' | 'skipped' | 'waiting'

/** How long an ordered delivery waits before it asks for its turn again, if no release made it due sooner. */
const LANE_RECHECK_MS = 5000

/**
 * A queued delivery's next attempt, made by the subscriber's worker or by the breaker's probe: the
 * same step as fan-out's first attempt (attempt.ts), its outcome written by outcomes.ts.
 */
async function attemptJob(options: RetryWorkerOptions, job: DeliveryJob, probe: boolean): Promise<{ step: Step; error?: Error }> {
  const { subscriber } = options
  if (!isOrdered(subscriber, job.data)) return (await attemptOnce(options, job, probe, false)).outcome
  const turn = await laneTurn(options, job)
  if (turn.kind === 'wait') return { step: 'waiting' }
  if (turn.stale && subscriber.ordering!.stale === 'skip') {
    await options.outcomes.skipped(subscriber, job.data, 'stale')
    await leaveLane(options, job, false)
    return { step: 'skipped' }
  }
  const { outcome, last } = await attemptOnce(options, job, probe, turn.stale)
  // The lane is held through retries; it passes on once nothing of this delivery is left to send.
  if (outcome.step !== 'failed' || last) await leaveLane(options, job, outcome.step !== 'failed')
  return outcome
}

async function attemptOnce(options: RetryWorkerOptions, job: DeliveryJob, probe: boolean, stale: boolean): Promise<{ outcome: { step: Step; error?: Error }; last: boolean }> {
  const { subscriber, queue, bodies, outcomes } = options
  const lookup = await bodies.lookup(job.data.eventId, subscriber.name)
  // Delivered already, by an attempt whose job was cut off before it completed.
  if (lookup.kind === 'settled') return { outcome: { step: 'settled' }, last: true }
  if (lookup.kind === 'expired') return { outcome: { step: 'failed', error: new UnrecoverableError(EXPIRED_REASON) }, last: true }
  if (lookup.kind === 'redacted') return { outcome: { step: 'failed', error: new UnrecoverableError(REDACTED_REASON) }, last: true }
  // A probe may come to a handed-over job before its worker took the first attempt as its own.
  const attemptNumber = attemptsMade(job) + 1
  await options.rateLimit?.turn()
  const report = await attempt(subscriber, job.data, lookup.body, attemptNumber, options, { probe, stale })
  if (report.verdict.kind === 'delivered') {
    await outcomes.delivered(subscriber, job.data, [...(await jobHistory(queue, job)), report.record], { heldBody: true })
    return { outcome: { step: 'delivered' }, last: true }
  }
  const last = await outcomes.failedAttempt(subscriber, job, report)
  return { outcome: { step: 'failed', error: failureOf(report.result, report.verdict) }, last }
}

/**
 * The delivery's turn in its object's lane. A blocker with nothing left to send (its job gone,
 * completed or dead-lettered without leaving the lane, as after a crash at the wrong moment) is
 * dropped from the lane, so that no lane stays stuck behind it.
 */
async function laneTurn(options: RetryWorkerOptions, job: DeliveryJob): Promise<LaneTurn> {
  const { ordering, queue, subscriber } = options
  let turn = await ordering.acquire(subscriber.name, job.data)
  for (let dropped = 0; turn.kind === 'wait' && dropped < BLOCKERS_DROPPED_AT_ONCE; dropped++) {
    const state = await queue.getJobState(turn.blocker)
    if (state !== 'unknown' && state !== 'completed' && state !== 'failed') break
    turn = await ordering.acquire(subscriber.name, job.data, turn.blocker)
  }
  return turn
}

/** Gone blockers one turn may drop; any more are dropped at the next. */
const BLOCKERS_DROPPED_AT_ONCE = 8

async function leaveLane(options: RetryWorkerOptions, job: DeliveryJob, delivered: boolean): Promise<void> {
  const { ordering, queue, subscriber } = options
  const next = await ordering.release(subscriber.name, job.data, delivered)
  if (next) await promoteIfDue(queue, next, subscriber.ordering!.windowMs)
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
    if (step === 'delivered' || step === 'settled' || step === 'skipped') await job.remove()
    return step
  }
}

export function createRetryWorker(options: RetryWorkerOptions) {
  const { subscriber, connection, prefix, slots, telemetry } = options
  const processor = async (job: DeliveryJob, token?: string) => {
    // Fan-out made the first attempt (outcomes.handedOver): it is this job's first, logged, counted
    // and scheduled by BullMQ like any other, without being sent again.
    const { firstAttempt, firstVerdict } = job.data
    if (firstAttempt && firstVerdict && firstAttemptPending(job)) {
      await logAttempt(job, firstAttempt)
      throw failureOf(firstAttempt, firstVerdict)
    }
    const { step, error } = await slots.run(() => attemptJob(options, job, false))
    if (step === 'waiting') {
      // Not an attempt: BullMQ counts none for a job moved back to the delayed set this way.
      await job.moveToDelayed(Date.now() + LANE_RECHECK_MS, token)
      throw new DelayedError()
    }
    if (error) throw error
  }

  return new Worker(queueName(subscriber.name), processor, {
    connection,
    prefix,
    ...(telemetry ? { telemetry } : {}),
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
