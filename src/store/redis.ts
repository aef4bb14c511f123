import { readFileSync } from 'node:fs'
import type { ConnectionOptions as TlsOptions } from 'node:tls'
import fp from 'fastify-plugin'
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis'
import type { RedisConfig } from '../config/redis.js'

/** A connection in any mode: one node or a Sentinel-watched primary (Redis), or a Redis Cluster. */
export type RedisClient = Redis | Cluster

declare module 'fastify' {
  interface FastifyInstance {
    redis: RedisClient
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

/**
 * A new connection in the configured mode. A cluster client keeps the options for each node's
 * connection, and its own offline queue and pipelining; it follows a failover by asking the
 * cluster for its slots again, as a Sentinel client asks the sentinels for the new primary.
 */
export function connectRedis(config: RedisConfig, options: RedisOptions, connectionName: string): RedisClient {
  const { topology } = config
  const tls: TlsOptions | undefined = config.tls ? (config.tls.caFile ? { ca: readFileSync(config.tls.caFile) } : {}) : undefined
  // A rediss:// URL turns TLS on by itself; a CA file is the one thing it cannot say.
  if (topology.mode === 'single') return new Redis(topology.url, { ...options, connectionName, ...(config.tls?.caFile ? { tls } : {}) })
  const node: RedisOptions = { ...options, connectionName, username: config.username, password: config.password, ...(tls ? { tls } : {}) }
  if (topology.mode === 'sentinel') {
    return new Redis({
      ...node,
      sentinels: topology.sentinels,
      name: topology.name,
      sentinelUsername: topology.sentinelUsername,
      sentinelPassword: topology.sentinelPassword,
      ...(tls ? { sentinelTLS: tls, enableTLSForSentinelMode: true } : {}),
      // Told of a new primary by the sentinels at once, rather than when the old one's socket fails.
      failoverDetector: true
    })
  }
  const { enableOfflineQueue, enableAutoPipelining, enableReadyCheck, lazyConnect, ...perNode } = node
  const cluster: ClusterOptions = {
    redisOptions: perNode,
    ...(lazyConnect === undefined ? {} : { lazyConnect }),
    ...(enableOfflineQueue === undefined ? {} : { enableOfflineQueue }),
    ...(enableAutoPipelining === undefined ? {} : { enableAutoPipelining }),
    ...(enableReadyCheck === undefined ? {} : { enableReadyCheck }),
    // Managed clusters' TLS certificates name the configuration endpoint, not the nodes' addresses.
    ...(tls ? { dnsLookup: (address: string, callback: (error: null, address: string) => void) => callback(null, address) } : {})
  }
  return new Cluster(topology.nodes, cluster)
}

/**
 * Sends what is queued and closes. A client that is not connected closes at once: its QUIT would
 * wait for a Redis that may never answer (an outage, an untrusted certificate). quit() alone leaves
 * a Sentinel client's failover subscriptions open (ioredis #1362): disconnect() closes them.
 */
export async function closeRedis(client: RedisClient): Promise<void> {
  if (client.status === 'ready') await client.quit().catch(() => undefined)
  client.disconnect()
}

export const redisPlugin = fp<{ config: RedisConfig }>(
  async (app, { config }) => {
    const redis = connectRedis(config, REQUEST_PATH_OPTIONS, 'persona-relay:intake')
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
    app.decorate<RedisClient, 'redis'>('redis', redis)
    // Start-up waits briefly for Redis so the first webhooks are not refused; past that the
    // service starts anyway, unready, and intake answers 503 until the connection is up.
    const ready = await Promise.race([
      new Promise<true>((resolve) => redis.once('ready', () => resolve(true))),
      new Promise<false>((resolve) => setTimeout(() => resolve(false), STARTUP_WAIT_MS).unref())
    ])
    if (!ready) app.log.warn('redis is not reachable yet; intake answers 503 until it is')
    app.addHook('onClose', async () => {
      await closeRedis(redis)
    })
  },
  { name: 'redis' }
)
