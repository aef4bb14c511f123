import { SpanKind, SpanStatusCode, type Tracer } from '@opentelemetry/api'
import type { FastifyBaseLogger } from 'fastify'
import type { SubscriberConfig } from '../config/index.js'
import type { RelayMetrics } from '../ops/metrics.js'
import type { Activity } from './activity.js'
import { attemptRecord } from './attempts.js'
import { judgeAttempt } from './retry-policy.js'
import { sendDelivery } from './sender.js'
import { spanContextOf } from '../trace-context.js'
import type { AttemptReport, AttemptResult, DeliveryData } from './types.js'

/** Where attempts are reported. */
export interface AttemptContext {
  log: FastifyBaseLogger
  metrics: RelayMetrics
  /** With tracing on: each attempt is a span, linked to the event's intake span. */
  tracer?: Tracer | undefined
  /** Per-minute counts of delivered and failed attempts, for the console. */
  activity?: Activity | undefined
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
  { log, metrics, tracer, activity }: AttemptContext,
  { probe = false, stale = false }: { probe?: boolean; stale?: boolean } = {}
): Promise<AttemptReport> {
  const startedAt = new Date()
  const send = () => sendDelivery(subscriber, data, body, attemptNumber, { stale })
  const result = tracer ? await traced(tracer, subscriber, data, attemptNumber, send) : await send()
  const verdict = judgeAttempt(result, Date.now())
  const outcome = verdict.kind === 'gone' ? 'gone' : result.outcome
  metrics.attempt(subscriber.name, outcome, result.durationMs / 1000)
  activity?.count(subscriber.name, verdict.kind === 'delivered' ? 'delivered' : 'failed')
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

/**
 * The attempt as a span of a trace of its own (a retry may come hours after the webhook), linked to
 * the event's intake span. The request undici makes inside it is its child, and carries its
 * `traceparent` to the subscriber. Metadata only: no body, no payload field.
 */
async function traced(tracer: Tracer, subscriber: SubscriberConfig, data: DeliveryData, attemptNumber: number, send: () => Promise<AttemptResult>) {
  const intake = data.traceparent ? spanContextOf(data.traceparent) : undefined
  return await tracer.startActiveSpan(
    'persona-relay delivery attempt',
    {
      root: true,
      kind: SpanKind.INTERNAL,
      links: intake ? [{ context: intake }] : [],
      attributes: {
        'persona.event.id': data.eventId,
        'persona.event.name': data.eventName,
        'persona_relay.subscriber': subscriber.name,
        'persona_relay.attempt': attemptNumber
      }
    },
    async (span) => {
      try {
        const result = await send()
        span.setAttributes({
          'persona_relay.attempt.outcome': result.outcome,
          ...(result.status !== undefined ? { 'http.response.status_code': result.status } : {}),
          ...(result.errorClass ? { 'error.type': result.errorClass } : {})
        })
        if (result.outcome !== 'success') span.setStatus({ code: SpanStatusCode.ERROR })
        return result
      } finally {
        span.end()
      }
    }
  )
}
