import type { SpanContext, Tracer } from '@opentelemetry/api'
import type { Telemetry } from 'bullmq'

declare module 'fastify' {
  interface FastifyInstance {
    /** Set only when tracing is configured (ops/tracing.ts); without it nothing makes a span. */
    tracer: Tracer | undefined
    /** BullMQ's spans (bullmq-otel), with tracing configured. */
    queueTelemetry: Telemetry | undefined
  }
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/

/** A span's W3C `traceparent`, as stored with an event so that its deliveries can link back to its intake. */
export function traceparentOf(context: SpanContext): string {
  return `00-${context.traceId}-${context.spanId}-${context.traceFlags.toString(16).padStart(2, '0')}`
}

/** The span context a stored `traceparent` names; undefined for anything that is not one. */
export function spanContextOf(traceparent: string): SpanContext | undefined {
  const match = TRACEPARENT.exec(traceparent)
  if (!match) return undefined
  return { traceId: match[1]!, spanId: match[2]!, traceFlags: Number.parseInt(match[3]!, 16), isRemote: true }
}
