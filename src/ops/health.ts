import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import Type from 'typebox'
import { hasPlaceholderSecret } from '../config/index.js'

const Health = Type.Object({ status: Type.Literal('ok') })
const Check = Type.Union([Type.Literal('ok'), Type.Literal('failing')])
const Readiness = Type.Object({
  status: Type.Union([Type.Literal('ready'), Type.Literal('unavailable')]),
  checks: Type.Object({
    redis: Check,
    delivery: Check,
    /** A warning, not a failure: the relay runs, but no real Persona delivery can verify. */
    personaSecret: Type.Union([Type.Literal('ok'), Type.Literal('placeholder')])
  }),
  /** Subscribers whose deliveries wait (circuit breaker or operator): the relay still takes events. */
  pausedSubscribers: Type.Array(Type.String())
})

const PING_TIMEOUT_MS = 1000

/** `/healthz`: the process answers. `/readyz`: it can take events (Redis) and forward them (workers). */
export const healthRoutes: FastifyPluginAsyncTypebox<{ secrets: readonly string[] }> = async (app, { secrets }) => {
  const personaSecret = hasPlaceholderSecret(secrets) ? ('placeholder' as const) : ('ok' as const)
  const quiet = { config: { requestLog: false } }

  app.get('/healthz', { ...quiet, schema: { response: { 200: Health } } }, async () => ({ status: 'ok' as const }))

  app.get('/readyz', { ...quiet, schema: { response: { 200: Readiness, 503: Readiness } } }, async (_request, reply) => {
    const redis = await ping(app.redis).then(() => 'ok' as const, () => 'failing' as const)
    const delivery = app.delivery.isRunning() ? ('ok' as const) : ('failing' as const)
    const ready = redis === 'ok' && delivery === 'ok'
    // Only asked of a Redis that answers: the queues' connection waits for Redis rather than fail.
    const pausedSubscribers = redis === 'ok' ? await pausedNames(app.delivery.queues) : []
    return reply
      .code(ready ? 200 : 503)
      .send({ status: ready ? 'ready' : 'unavailable', checks: { redis, delivery, personaSecret }, pausedSubscribers })
  })
}

async function pausedNames(queues: ReadonlyMap<string, { isPaused(): Promise<boolean> }>): Promise<string[]> {
  const states = await Promise.all([...queues].map(async ([name, queue]) => ((await queue.isPaused()) ? [name] : [])))
  return states.flat()
}

async function ping(redis: { ping(): Promise<string> }): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([
      redis.ping(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('ping timed out')), PING_TIMEOUT_MS)
      })
    ])
  } finally {
    clearTimeout(timer)
  }
}
