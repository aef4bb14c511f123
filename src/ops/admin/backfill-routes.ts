import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { resolveRange } from '../../backfill/range.js'
import { ErrorResponse, Errors } from '../../errors.js'
import { BackfillBody, BackfillJobSchema, BackfillParams } from './schemas.js'

const Errors4xx = { 400: ErrorResponse, 401: ErrorResponse, 404: ErrorResponse, 409: ErrorResponse, 503: ErrorResponse }

/** The lock and the records live in Redis: while it is away the answer is a 503 to retry, not a 500. */
async function fromStore<T>(work: Promise<T>): Promise<T> {
  return work.catch(() => {
    throw new Errors.STORE_UNAVAILABLE()
  })
}

/** `POST /admin/backfill` starts a backfill from Persona's Events API; `GET /admin/backfill/:id` follows it. */
export const backfillRoutes: FastifyPluginAsyncTypebox = async (app) => {
  function backfiller() {
    if (!app.backfill) throw new Errors.BACKFILL_NOT_CONFIGURED()
    return app.backfill
  }

  app.post('/backfill', { schema: { body: BackfillBody, response: { 202: BackfillJobSchema, ...Errors4xx } } }, async (request, reply) => {
    const service = backfiller()
    const { since, until, dryRun = false } = request.body
    const range = resolveRange({ since, until }, Date.now(), service.maxAgeMs)
    if ('problem' in range) throw new Errors.INVALID_BACKFILL_RANGE(range.problem)
    const started = await fromStore(service.start({ range, dryRun, trigger: 'admin' }))
    if (!started) throw new Errors.BACKFILL_RUNNING()
    request.log.info({ backfillId: started.job.id, since: started.job.since, until: started.job.until, dryRun }, 'admin: backfill started')
    return reply.code(202).header('location', `/admin/backfill/${started.job.id}`).send(started.job)
  })

  app.get('/backfill/:id', { schema: { params: BackfillParams, response: { 200: BackfillJobSchema, ...Errors4xx } } }, async (request) => {
    const job = await fromStore(backfiller().get(request.params.id))
    if (!job) throw new Errors.BACKFILL_NOT_FOUND()
    return job
  })
}
