import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import Type from 'typebox'

const Health = Type.Object({ status: Type.Literal('ok') })
const Check = Type.Union([Type.Literal('ok'), Type.Literal('failing')])
const Readiness = Type.Object({
  status: Type.Union([Type.Literal('ready'), Type.Literal('unavailable')]),
  checks: Type.Object({ redis: Check, delivery: Check })
})

const PING_TIMEOUT_MS = 1000

/** `/healthz`: the process answers. `/readyz`: it can take events (Redis) and forward them (workers). */
export const healthRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const quiet = { config: { requestLog: false } }

  app.get('/healthz', { ...quiet, schema: { response: { 200: Health } } }, async () => ({ status: 'ok' as const }))

  app.get('/readyz', { ...quiet, schema: { response: { 200: Readiness, 503: Readiness } } }, async (_request, reply) => {
    const redis = await ping(app.redis).then(() => 'ok' as const, () => 'failing' as const)
    const delivery = app.delivery.isRunning() ? ('ok' as const) : ('failing' as const)
    const ready = redis === 'ok' && delivery === 'ok'
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'unavailable', checks: { redis, delivery } })
  })
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
