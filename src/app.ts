import Fastify, { LogController, type FastifyError, type FastifyReply, type FastifyServerOptions } from 'fastify'
import { TypeBoxValidatorCompiler, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { DestinationStream } from 'pino'
import { hasPlaceholderSecret, type Config } from './config/index.js'
import { errorBody, Errors, loggableError, toServiceError } from './errors.js'
import { redisPlugin } from './store/redis.js'
import { eventStorePlugin } from './store/event-store.js'
import { deliveryPlugin } from './delivery/plugin.js'
import { backfillPlugin } from './backfill/plugin.js'
import { intakeRoutes } from './intake/route.js'
import { healthRoutes } from './ops/health.js'
import { metricsPlugin } from './ops/metrics.js'
import { adminRoutes } from './ops/admin/routes.js'
import './trace-context.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** false keeps a route (health probes) out of the request log. */
    requestLog?: boolean
  }
}

export interface BuildOptions {
  /** Where logs go; tests capture them here. Defaults to stdout. */
  logStream?: DestinationStream
}

/** Headers and fields that must never reach a log line, whatever logs them. */
export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers["persona-signature"]',
  'req.headers["x-persona-signature"]',
  'req.headers["webhook-signature"]',
  'req.headers.cookie',
  'body',
  'rawBody',
  'req.body'
]

export function loggerOptions(config: Config, stream?: DestinationStream): FastifyServerOptions['logger'] {
  return {
    level: config.logLevel,
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    // ioredis attaches a failed command's arguments (bodies among them) to its errors: every `err`
    // logged anywhere keeps only its message, code and stack.
    serializers: { err: loggableError },
    ...(stream ? { stream } : {})
  }
}

function sendError(reply: FastifyReply, error: FastifyError) {
  return reply.code(error.statusCode ?? 500).send(errorBody(error))
}

const CONNECTIONS_CHECKING_INTERVAL_MS = 1000

/** Builds the whole service without listening; server.ts listens, tests inject or listen on port 0. */
export async function buildApp(config: Config, options: BuildOptions = {}) {
  const app = Fastify({
    logger: loggerOptions(config, options.logStream),
    bodyLimit: config.bodyLimitBytes,
    // Node's defaults let a client that trickles its body (or sends nothing) hold a connection and
    // its buffered bytes for ever. The whole request, headers and body, must arrive within the
    // deadline, or Node answers 408 and closes the socket; it checks every second, not every 30 s.
    requestTimeout: config.requestTimeoutMs,
    http: {
      requestTimeout: config.requestTimeoutMs,
      headersTimeout: config.requestTimeoutMs,
      connectionsCheckingInterval: CONNECTIONS_CHECKING_INTERVAL_MS
    },
    // One line per request is written by the routes themselves, with what matters to them.
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
    // Event ids may be up to 132 characters (`evt_` + 128); the admin API takes them as parameters.
    routerOptions: { maxParamLength: 512 },
    // Errors Fastify raises before routing (bad URL encoding, oversized parameters) get our body too.
    frameworkErrors: (error, _request, reply) => {
      void sendError(reply as FastifyReply, toServiceError(error))
    },
    // Decides which address is the client's (request.ip) for the source allowlist.
    trustProxy: config.trustProxy
  }).withTypeProvider<TypeBoxTypeProvider>()
  // Past the cap Node closes each new connection at once; open ones carry on.
  app.server.maxConnections = config.maxConnections

  if (hasPlaceholderSecret(config.persona.secrets)) {
    app.log.warn('PERSONA_WEBHOOK_SECRET is still the placeholder from .env.example: no delivery from Persona will verify; set the secret from the Persona dashboard')
  }

  app.setValidatorCompiler(TypeBoxValidatorCompiler)
  app.setErrorHandler<FastifyError>((error, request, reply) => {
    const serviceError = toServiceError(error)
    if ((serviceError.statusCode ?? 500) >= 500 && serviceError.code === 'INTERNAL_ERROR') {
      request.log.error({ err: error }, 'request failed')
    }
    return sendError(reply, serviceError)
  })
  app.setNotFoundHandler((_request, reply) => sendError(reply, new Errors.NOT_FOUND()))
  app.addHook('onResponse', async (request, reply) => {
    if (request.routeOptions.config.requestLog === false || request.intake) return
    request.log.info(
      { method: request.method, url: request.url, statusCode: reply.statusCode, durationMs: Math.round(reply.elapsedTime * 10) / 10 },
      'request'
    )
  })

  // Before every route, which the request spans wrap; loaded only when configured.
  const tracing = config.tracing ? (await import('./ops/tracing.js')).startTracing(config.tracing) : undefined
  app.decorate('tracer', tracing?.tracer)
  app.decorate('queueTelemetry', tracing?.queueTelemetry)
  if (tracing) {
    await app.register(tracing.plugin)
    app.addHook('onClose', () => tracing.shutdown())
  }
  // A start refused part-way (data in another key layout, found once Redis answered) closes the
  // connections it had opened, so that a process or test that goes on is not held by them.
  try {
    await app.register(redisPlugin, { config: config.redis })
    await app.register(metricsPlugin, { metricsPort: config.metricsPort, host: config.host })
    await app.register(eventStorePlugin, {
      layout: config.redis.layout,
      dedupeTtlSeconds: config.dedupeTtlSeconds,
      replicaWait: { replicas: config.redis.waitReplicas, timeoutMs: config.redis.waitTimeoutMs }
    })
    await app.register(deliveryPlugin, { config })
    await app.register(backfillPlugin, { config })
    await app.register(healthRoutes, { secrets: config.persona.secrets })
    // A worker-only instance does not take webhooks; it still serves health and the admin API.
    if (config.role !== 'worker') await app.register(intakeRoutes, { config })
    if (config.adminToken) {
      await app.register(adminRoutes, { prefix: '/admin', config, token: config.adminToken })
      // Loaded only here: bull-board and its UI cost an instance without the admin API about 10 MB.
      const { DASHBOARD_PATH, dashboardRoutes } = await import('./ops/dashboard.js')
      await app.register(dashboardRoutes, { prefix: DASHBOARD_PATH, token: config.adminToken })
    }
  } catch (error) {
    await app.close().catch(() => undefined)
    throw error
  }
  return app
}

export type App = Awaited<ReturnType<typeof buildApp>>
