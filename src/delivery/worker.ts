import { UnrecoverableError, Worker, type Job } from 'bullmq'
import type { Redis } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import type { SubscriberConfig } from '../config/index.js'
import { attemptRecord, logAttempt, type AttemptRecord } from './attempts.js'
import { pendingImmediateAttempt, queueName, withoutImmediateAttempt, type DeliveryJobData } from './job.js'
import { retryDelayMs } from './retry-schedule.js'
import { countsTowardsBreaker, judgeAttempt, type AttemptVerdict } from './retry-policy.js'
import { sendDelivery, type AttemptResult } from './sender.js'
import type { Slots } from './slots.js'
import type { SubscriberControl } from './subscriber-control.js'
import type { EventBodies } from '../store/event-bodies.js'
import type { RelayMetrics } from '../ops/metrics.js'

/** Thrown for an attempt that did not end in a 2xx, so that BullMQ schedules the next one. */
export class DeliveryAttemptError extends Error {
  constructor(readonly result: AttemptResult, readonly retryAfterMs?: number) {
    super(result.status !== undefined ? `subscriber answered HTTP ${result.status}` : `delivery failed: ${result.errorClass}`)
    this.name = 'DeliveryAttemptError'
  }
}

/** The failed reason of a delivery ended by a 410; the admin API reports it as reason `gone`. */
export const GONE_REASON = 'gone: subscriber answered 410'
/** The failed reason of a delivery whose body outlived its retention before it could be sent. */
export const EXPIRED_REASON = 'expired: the event body is no longer kept'

/** Where attempts are reported and where their bodies come from. */
export interface DeliveryContext {
  log: FastifyBaseLogger
  metrics: RelayMetrics
  bodies: EventBodies
}

export interface DeliveryWorkerOptions extends DeliveryContext {
  subscriber: SubscriberConfig
  connection: Redis
  prefix: string
  control: SubscriberControl
  /** The subscriber's concurrency in this process, shared with fan-out's immediate attempts. */
  slots: Slots
  /** How long a dead letter is kept, and with it its body. */
  deadLetterRetentionSeconds: number
}

/** What an attempt did, and its line in the delivery's history. */
export interface AttemptReport {
  result: AttemptResult
  verdict: AttemptVerdict
  record: AttemptRecord
}

export type DeliveryOutcome =
  | ({ kind: 'attempted' } & AttemptReport)
  /** An earlier attempt delivered it but was cut off before the delivery completed. */
  | { kind: 'settled' }

/**
 * One attempt at a delivery: fetch the shared body, send, judge, count and log it. Shared by the
 * worker and the circuit breaker's probe so that both leave the same trace; each keeps the
 * attempt's record and releases the body in its own way.
 */
export async function attemptDelivery(
  subscriber: SubscriberConfig,
  job: Job<DeliveryJobData>,
  context: DeliveryContext,
  probe = false
): Promise<DeliveryOutcome> {
  const lookup = await context.bodies.lookup(job.data.eventId, subscriber.name)
  if (lookup.kind === 'settled') return lookup
  if (lookup.kind === 'expired') throw new UnrecoverableError(EXPIRED_REASON)
  return { kind: 'attempted', ...(await sendAttempt(subscriber, job.data, lookup.body, job.attemptsMade + 1, context, probe)) }
}

/** Sends a body the caller already holds, then judges, counts and logs the attempt (fan-out's immediate attempts too). */
export async function sendAttempt(
  subscriber: SubscriberConfig,
  data: DeliveryJobData,
  body: string,
  attempt: number,
  { log, metrics }: DeliveryContext,
  probe = false
): Promise<AttemptReport> {
  const startedAt = new Date()
  const result = await sendDelivery(subscriber, data, body, attempt)
  const verdict = judgeAttempt(result, Date.now())
  const outcome = verdict.kind === 'gone' ? 'gone' : result.outcome
  metrics.attempt(subscriber.name, outcome, result.durationMs / 1000)
  if (verdict.kind === 'delivered') metrics.delivered(subscriber.name, data.receivedAt)
  log.info(
    {
      subscriber: subscriber.name,
      eventId: data.eventId,
      eventName: data.eventName,
      attempt,
      probe: probe || undefined,
      outcome,
      status: result.status,
      errorClass: result.errorClass,
      durationMs: result.durationMs
    },
    'delivery attempt'
  )
  return { result, verdict, record: attemptRecord(result, attempt, startedAt, probe) }
}

export function createDeliveryWorker({ subscriber, connection, prefix, control, slots, deadLetterRetentionSeconds, ...context }: DeliveryWorkerOptions) {
  const processor = async (job: Job<DeliveryJobData>) => {
    if (job.data.deliveredByProbe) {
      await context.bodies.settle(job.data.eventId, subscriber.name)
      return { deliveredByProbe: true }
    }
    // Fan-out made the first attempt itself and handed the delivery over when it failed
    // (immediate.ts): that attempt is this job's first, counted and scheduled like any other.
    const handedOver = pendingImmediateAttempt(job)
    const delivery: DeliveryOutcome = handedOver
      ? { kind: 'attempted', ...handedOver }
      : await slots.run(() => attemptDelivery(subscriber, job, context))
    if (delivery.kind === 'settled') return { alreadyDelivered: true }
    const { result, verdict, record } = delivery
    if (verdict.kind === 'delivered') {
      // One round trip: the body goes if this was the last subscriber, and the breaker's count resets.
      // The attempt's record is the job's result, which BullMQ stores with the completion.
      await context.bodies.settle(job.data.eventId, subscriber.name, [control.failuresKey])
      return { status: result.status, durationMs: result.durationMs, attempt: record }
    }
    await Promise.all([logAttempt(job, record), countsTowardsBreaker(result) && control.recordFailure()])
    if (handedOver) await job.updateData(withoutImmediateAttempt(job.data))
    const lastAttempt = verdict.kind === 'gone' || record.attempt >= (job.opts.attempts ?? 1)
    if (lastAttempt) await context.bodies.retain(job.data.eventId, deadLetterRetentionSeconds)
    if (verdict.kind === 'gone') throw new UnrecoverableError(GONE_REASON)
    throw new DeliveryAttemptError(result, verdict.retryAfterMs)
  }

  return new Worker<DeliveryJobData>(queueName(subscriber.name), processor, {
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
