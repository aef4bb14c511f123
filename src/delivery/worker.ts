import { UnrecoverableError, Worker, type Job } from 'bullmq'
import type { Redis } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import type { SubscriberConfig } from '../config/index.js'
import { attemptRecord } from './attempts.js'
import { queueName, withoutBody, type DeliveryJobData } from './job.js'
import { retryDelayMs } from './retry-schedule.js'
import { judgeAttempt, type AttemptVerdict } from './retry-policy.js'
import { sendDelivery, type AttemptResult } from './sender.js'
import type { SubscriberControl } from './subscriber-control.js'
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

/** Where attempts are reported: the log and the metrics. */
export interface DeliveryObservers {
  log: FastifyBaseLogger
  metrics: RelayMetrics
}

export interface DeliveryWorkerOptions extends DeliveryObservers {
  subscriber: SubscriberConfig
  connection: Redis
  prefix: string
  control: SubscriberControl
}

/**
 * One attempt at a delivery: send, record it in the delivery's history, log it. Shared by the
 * worker and the circuit breaker's probe so that both leave the same trace.
 */
export async function attemptDelivery(
  subscriber: SubscriberConfig,
  job: Job<DeliveryJobData>,
  { log, metrics }: DeliveryObservers,
  probe = false
): Promise<{ result: AttemptResult; verdict: AttemptVerdict }> {
  const attempt = job.attemptsMade + 1
  const startedAt = new Date()
  // Only a completed delivery loses its body, and a completed job is never processed again.
  if (job.data.body === undefined) throw new UnrecoverableError('delivery has no body')
  const result = await sendDelivery(subscriber, job.data, job.data.body, attempt)
  const verdict = judgeAttempt(result, Date.now())
  await job.log(JSON.stringify(attemptRecord(result, attempt, startedAt, probe)))
  const outcome = verdict.kind === 'gone' ? 'gone' : result.outcome
  metrics.attempt(subscriber.name, outcome, result.durationMs / 1000)
  if (verdict.kind === 'delivered') metrics.delivered(subscriber.name, job.data.receivedAt)
  log.info(
    {
      subscriber: subscriber.name,
      eventId: job.data.eventId,
      eventName: job.data.eventName,
      attempt,
      probe: probe || undefined,
      outcome,
      status: result.status,
      errorClass: result.errorClass,
      durationMs: result.durationMs
    },
    'delivery attempt'
  )
  return { result, verdict }
}

export function createDeliveryWorker({ subscriber, connection, prefix, control, ...observers }: DeliveryWorkerOptions) {
  const processor = async (job: Job<DeliveryJobData>) => {
    if (job.data.deliveredByProbe) return { deliveredByProbe: true }
    const { result, verdict } = await attemptDelivery(subscriber, job, observers)
    if (verdict.kind === 'delivered') {
      // Persona bodies are personal data: once the subscriber has it, only the metadata stays.
      await Promise.all([job.updateData(withoutBody(job.data)), control.recordSuccess()])
      return { status: result.status, durationMs: result.durationMs }
    }
    await control.recordFailure()
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
