import type { FastifyError, FastifyPluginAsync, FastifyRequest } from 'fastify'
import type { Queue } from 'bullmq'
import { createBullBoard } from '@bull-board/api'
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter'
import { FastifyAdapter } from '@bull-board/fastify'
import { errorBody, Errors } from '../errors.js'
import type { Completions } from '../store/completions.js'
import { adminAuthorized, BASIC_CHALLENGE } from './admin/credentials.js'

export const DASHBOARD_PATH = '/admin/queues'

/**
 * bull-board actions that would make a delivery Persona never asked for: a job added or edited from
 * the board is no event the relay received and routed, and a completed delivery has released its
 * body (store/event-bodies.ts), so a retry of it could never be sent.
 */
const NOT_SERVED = new Set([
  `POST ${DASHBOARD_PATH}/api/queues/:queueName/add`,
  `PATCH ${DASHBOARD_PATH}/api/queues/:queueName/:jobId/update-data`
])
/**
 * bull-board actions that delete jobs. Only the relay settling a delivery releases its share of the
 * event body (store/event-bodies.ts): removed here, a delivery would vanish without a dead letter
 * while its body, personal data, stayed in Redis until DEDUPE_TTL_SECONDS.
 */
const REMOVES_JOBS = new Set([
  `PUT ${DASHBOARD_PATH}/api/queues/:queueName/:jobId/clean`,
  `PUT ${DASHBOARD_PATH}/api/queues/:queueName/clean/:queueStatus`,
  `PUT ${DASHBOARD_PATH}/api/queues/:queueName/empty`,
  `PUT ${DASHBOARD_PATH}/api/queues/:queueName/obliterate`,
  `PUT ${DASHBOARD_PATH}/api/queues/:queueName/:jobId/remove-unprocessed-children`
])
const RETRY_ALL = `PUT ${DASHBOARD_PATH}/api/queues/:queueName/retry/:queueStatus`
// The board offers it on a delivery it listed as failed, which may have completed since.
const RETRY_ONE = `PUT ${DASHBOARD_PATH}/api/queues/:queueName/:jobId/retry`

interface BoardParams {
  queueName?: string
  jobId?: string
  queueStatus?: string
}

/** By matched route rather than URL text, which an encoded or oddly written path could slip past. */
async function refusedAction(request: FastifyRequest, subscribers: ReadonlyMap<string, { name: string; queue: Queue }>, completions: Completions): Promise<FastifyError | undefined> {
  const route = `${request.method} ${request.routeOptions.url}`
  const params = request.params as BoardParams
  if (NOT_SERVED.has(route)) return new Errors.NOT_FOUND()
  if (REMOVES_JOBS.has(route)) return new Errors.DASHBOARD_ACTION_DISABLED()
  if (route === RETRY_ALL && params.queueStatus !== 'failed') return new Errors.DELIVERY_NOT_FAILED()
  const subscriber = subscribers.get(params.queueName ?? '')
  if (route === RETRY_ONE && subscriber) {
    // A completed delivery's job is gone: its record in the completion store says it completed.
    const state = await subscriber.queue.getJobState(params.jobId ?? '')
    if (state === 'completed' || (state === 'unknown' && (await completions.get(subscriber.name, params.jobId ?? '')))) {
      return new Errors.DELIVERY_NOT_FAILED()
    }
  }
  return undefined
}

/** allowCompletedRetries is missing from BullMQAdapter's option type, but its base class reads it. */
const ADAPTER_OPTIONS = { allowRetries: true, allowCompletedRetries: false, description: 'Deliveries to one subscriber' }

/**
 * bull-board at /admin/queues, one queue per subscriber: counts, each delivery's attempt history
 * (its job log), retry and pause. Persona bodies never reach the page.
 */
export const dashboardRoutes: FastifyPluginAsync<{ token: string }> = async (app, { token }) => {
  const byQueueName = new Map([...app.delivery.queues].map(([name, queue]) => [queue.name, { name, queue }]))
  // The board can act on every queue; a page framed by another site could click for the operator.
  app.addHook('onSend', async (_request, reply) => {
    reply.header('x-frame-options', 'DENY').header('content-security-policy', "frame-ancestors 'none'")
  })
  // Answers are sent, not thrown: bull-board's own error handler would turn them into its internal-error shape.
  app.addHook('onRequest', async (request, reply) => {
    if (!adminAuthorized(request.headers.authorization, token)) {
      return reply
        .code(401)
        .header('www-authenticate', BASIC_CHALLENGE)
        .send(errorBody(new Errors.ADMIN_UNAUTHORIZED()))
    }
    const refused = await refusedAction(request, byQueueName, app.delivery.completions)
    if (refused) return reply.code(refused.statusCode!).send(errorBody(refused))
  })

  // Ours, so that an unknown path under the board passes the hooks above too.
  app.setNotFoundHandler((_request, reply) => reply.code(404).send(errorBody(new Errors.NOT_FOUND())))

  const serverAdapter = new FastifyAdapter()
  serverAdapter.setBasePath(DASHBOARD_PATH)
  createBullBoard({
    // Job data is metadata only: bodies are stored apart (store/event-bodies.ts), so the board never shows one.
    queues: [...app.delivery.queues.values()].map((queue) => new BullMQAdapter(queue, ADAPTER_OPTIONS)),
    serverAdapter,
    options: { uiConfig: { boardTitle: 'persona-relay' } }
  })
  await app.register(serverAdapter.registerPlugin())
}
