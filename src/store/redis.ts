import fp from 'fastify-plugin'
import { Redis, type RedisOptions } from 'ioredis'

declare module 'fastify' {
  interface FastifyInstance {
    redis: Redis
  }
}

/**
 * The request path's connection. Without an offline queue and with a command timeout, a Redis
 * outage fails a request within seconds (503, Persona retries) instead of holding it until
 * Persona's own 5 s timeout; the client keeps reconnecting in the background.
 */
export const REQUEST_PATH_OPTIONS: RedisOptions = {
  enableOfflineQueue: false,
  enableAutoPipelining: true,
  commandTimeout: 1500,
  maxRetriesPerRequest: 1,
  connectTimeout: 1500
}

/** Workers and queues wait for Redis to come back rather than fail jobs while it is away. */
export const BACKGROUND_OPTIONS: RedisOptions = {
  maxRetriesPerRequest: null,
  enableReadyCheck: true
}

const STARTUP_WAIT_MS = 5000

/**
 * The replies of a pipeline or transaction, in order. ioredis resolves a command that failed as
 * `[error, undefined]` beside the others, and an aborted transaction as null: either throws here.
 */
export function repliesOf(replies: [Error | null, unknown][] | null): unknown[] {
  if (!replies) throw new Error('Redis transaction aborted')
  const failed = replies.find(([error]) => error)
  if (failed) throw failed[0]
  return replies.map(([, reply]) => reply)
}

export function connectRedis(url: string, options: RedisOptions, connectionName: string): Redis {
  return new Redis(url, { ...options, connectionName })
}

export const redisPlugin = fp<{ url: string }>(
  async (app, { url }) => {
    const redis = connectRedis(url, REQUEST_PATH_OPTIONS, 'persona-relay:intake')
    let lastError = ''
    redis.on('error', (error: Error) => {
      // ioredis retries every few hundred ms while Redis is away; one line per distinct error is enough.
      if (error.message === lastError) return
      lastError = error.message
      app.log.warn({ err: { message: error.message } }, 'redis connection error')
    })
    redis.on('ready', () => {
      if (lastError) app.log.info('redis connection restored')
      lastError = ''
    })
    app.decorate('redis', redis)
    // Start-up waits briefly for Redis so the first webhooks are not refused; past that the
    // service starts anyway, unready, and intake answers 503 until the connection is up.
    const ready = await Promise.race([
      new Promise<true>((resolve) => redis.once('ready', () => resolve(true))),
      new Promise<false>((resolve) => setTimeout(() => resolve(false), STARTUP_WAIT_MS).unref())
    ])
    if (!ready) app.log.warn('redis is not reachable yet; intake answers 503 until it is')
    app.addHook('onClose', async () => {
      await redis.quit().catch(() => redis.disconnect())
    })
  },
  { name: 'redis' }
)
