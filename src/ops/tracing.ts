import { FastifyOtelInstrumentation } from '@fastify/otel'
import { trace, type Tracer } from '@opentelemetry/api'
import { OTLPTraceExporter as JsonExporter } from '@opentelemetry/exporter-trace-otlp-http'
import { OTLPTraceExporter as ProtobufExporter } from '@opentelemetry/exporter-trace-otlp-proto'
import { UndiciInstrumentation } from '@opentelemetry/instrumentation-undici'
import { resourceFromAttributes } from '@opentelemetry/resources'
import { BatchSpanProcessor, NodeTracerProvider } from '@opentelemetry/sdk-trace-node'
import type { Telemetry } from 'bullmq'
import { BullMQOtel } from 'bullmq-otel'
import type { FastifyPluginCallback } from 'fastify'
import type { Config } from '../config/index.js'
import { USER_AGENT } from '../version.js'

export interface Tracing {
  tracer: Tracer
  /** @fastify/otel: one span per request, a child of the caller's `traceparent` when it sent one. */
  plugin: FastifyPluginCallback
  /** bullmq-otel, for the queues and workers: a span per job added and per job processed. */
  queueTelemetry: Telemetry
  /** Sends what is still buffered, then stops. */
  shutdown(): Promise<void>
}

/**
 * OpenTelemetry, loaded (app.ts imports this module) only when configured: off, the relay neither
 * loads the SDK nor makes a span. The exporter reads OpenTelemetry's standard variables
 * (OTEL_EXPORTER_OTLP_ENDPOINT, _HEADERS, OTEL_BSP_*). Outbound requests are traced by undici's
 * instrumentation, which also sends the W3C `traceparent` and `tracestate` to subscribers.
 */
export function startTracing({ protocol, serviceName }: NonNullable<Config['tracing']>): Tracing {
  const exporter = protocol === 'http/json' ? new JsonExporter() : new ProtobufExporter()
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ 'service.name': serviceName, 'service.version': USER_AGENT.split('/')[1] ?? '' }),
    spanProcessors: [new BatchSpanProcessor(exporter)]
  })
  // Sets the context manager and the W3C propagator too, for every instrumentation to share.
  provider.register()
  const undici = new UndiciInstrumentation()
  const fastify = new FastifyOtelInstrumentation({
    // Probes and scrapes would be most of the spans and say nothing about an event.
    ignorePaths: (route) => route.url === '/healthz' || route.url === '/readyz' || route.url === '/metrics'
  })
  return {
    tracer: trace.getTracer('persona-relay'),
    plugin: fastify.plugin(),
    queueTelemetry: new BullMQOtel({ tracerName: 'persona-relay-queue' }),
    shutdown: async () => {
      undici.disable()
      fastify.disable()
      await provider.shutdown()
    }
  }
}
