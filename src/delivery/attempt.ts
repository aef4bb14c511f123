import type { FastifyBaseLogger } from 'fastify'
import type { SubscriberConfig } from '../config/index.js'
import type { RelayMetrics } from '../ops/metrics.js'
import { attemptRecord } from './attempts.js'
import { judgeAttempt } from './retry-policy.js'
import { sendDelivery } from './sender.js'
import type { AttemptReport, DeliveryData } from './types.js'

/** Where attempts are reported. */
export interface AttemptContext {
  log: FastifyBaseLogger
  metrics: RelayMetrics
}

/**
 * One attempt of a delivery, whichever step makes it (fan-out's first attempt, a worker's retry,
 * the breaker's probe): send the body, judge the answer, count and log it. What it leads to is
 * written by outcomes.ts.
 */
export async function attempt(
  subscriber: SubscriberConfig,
  data: DeliveryData,
  body: string,
  attemptNumber: number,
  { log, metrics }: AttemptContext,
  { probe = false, stale = false }: { probe?: boolean; stale?: boolean } = {}
): Promise<AttemptReport> {
  const startedAt = new Date()
  const result = await sendDelivery(subscriber, data, body, attemptNumber, { stale })
  const verdict = judgeAttempt(result, Date.now())
  const outcome = verdict.kind === 'gone' ? 'gone' : result.outcome
  metrics.attempt(subscriber.name, outcome, result.durationMs / 1000)
  if (verdict.kind === 'delivered') metrics.delivered(subscriber.name, data.receivedAt)
  log.info(
    {
      subscriber: subscriber.name,
      eventId: data.eventId,
      eventName: data.eventName,
      attempt: attemptNumber,
      probe: probe || undefined,
      stale: stale || undefined,
      outcome,
      status: result.status,
      errorClass: result.errorClass,
      durationMs: result.durationMs
    },
    'delivery attempt'
  )
  return { result, verdict, record: attemptRecord(result, attemptNumber, startedAt, probe) }
}
