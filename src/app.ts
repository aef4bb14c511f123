import Fastify, { LogController, type FastifyError, type FastifyServerOptions } from 'fastify'
import { TypeBoxValidatorCompiler, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { DestinationStream } from 'pino'
import type { Config } from './config/index.js'
import { errorBody, Errors, toServiceError } from './errors.js'
import { redisPlugin } from './store/redis.js'
import { eventStorePlugin } from './store/event-store.js'
import { deliveryPlugin } from './delivery/plugin.js'
import { intakeRoutes } from './intake/route.js'
import { healthRoutes } from './ops/health.js'

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
    ...(stream ? { stream } : {})
  }
}

/** Builds the whole service without listening; server.ts listens, tests inject or listen on port 0. */
export async function buildApp(config: Config, options: BuildOptions = {}) {
  const app = Fastify({
    logger: loggerOptions(config, options.logStream),
    bodyLimit: config.bodyLimitBytes,
    // One line per request is written by the routes themselves, with what matters to them.
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true
  }).withTypeProvider<TypeBoxTypeProvider>()

  app.setValidatorCompiler(TypeBoxValidatorCompiler)
  app.setErrorHandler<FastifyError>((error, request, reply) => {
    const serviceError = toServiceError(error)
    if ((serviceError.statusCode ?? 500) >= 500 && serviceError.code === 'INTERNAL_ERROR') {
      request.log.error({ err: error }, 'request failed')
    }
    return reply.code(serviceError.statusCode ?? 500).send(errorBody(serviceError))
  })
  app.setNotFoundHandler((_request, reply) => reply.code(404).send(errorBody(new Errors.NOT_FOUND())))
  app.addHook('onResponse', async (request, reply) => {
    if (request.routeOptions.config.requestLog === false || request.intake) return
    request.log.info(
      { method: request.method, url: request.url, statusCode: reply.statusCode, durationMs: Math.round(reply.elapsedTime * 10) / 10 },
      'request'
    )
  })

  await app.register(redisPlugin, { url: config.redis.url })
  await app.register(eventStorePlugin, { prefix: config.redis.prefix, dedupeTtlSeconds: config.dedupeTtlSeconds })
  await app.register(deliveryPlugin, { config })
  await app.register(healthRoutes)
  await app.register(intakeRoutes, { config })
  return app
}

export type App = Awaited<ReturnType<typeof buildApp>>
