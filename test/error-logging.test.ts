import t from 'tap'
import { Redis } from 'ioredis'
import { ADMIN_TOKEN } from './helpers/admin.js'
import { startRelay, uniqueEventId } from './helpers/app.js'

/** Stands for an event body: what a failed command's arguments may hold. */
const MARKER = 'alex.marker-7f3a9c@example.test'

interface RedisCommandError extends Error {
  command?: { name: string; args: unknown[] }
}

/** A real ReplyError from a real Redis: a write of a body that the server refused. */
async function replyErrorHolding(url: string, value: string): Promise<RedisCommandError> {
  const redis = new Redis(url)
  try {
    await redis.set('probe:not-a-hash', 'x')
    return await redis.hset('probe:not-a-hash', 'body', value).then(
      () => { throw new Error('HSET on a string succeeded') },
      (error: RedisCommandError) => error
    )
  } finally {
    redis.disconnect()
  }
}

t.test('regression: a 500 logs the error\'s message, code and stack but never the arguments ioredis attached', async (t) => {
  const { app, redis, logs } = await startRelay(t, { ADMIN_TOKEN, SUBSCRIBER_CRM_URL: 'http://127.0.0.1:9/hook', SUBSCRIBER_CRM_EVENTS: '*' })
  const error = await replyErrorHolding(redis.url, JSON.stringify({ email: MARKER }))
  t.match(error, { name: 'ReplyError', message: /^WRONGTYPE/ }, 'premise: Redis refused the command')
  t.match(JSON.stringify(error.command?.args), MARKER, 'premise: ioredis attached the arguments')
  // The event view's first Redis call fails with it, as it would if Redis refused that command.
  t.capture(app.redis, 'hmget', () => Promise.reject(error))

  const response = await app.inject({ method: 'GET', url: `/admin/events/${uniqueEventId()}`, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
  t.equal(response.statusCode, 500)
  t.same(response.json(), { statusCode: 500, code: 'INTERNAL_ERROR', error: 'Internal Server Error', message: 'Internal error' })

  const failed = logs.lines.filter((line) => line.msg === 'request failed')
  t.equal(failed.length, 1, 'the failure is logged once')
  t.match(failed[0], { level: 50, err: { message: error.message, stack: error.stack } })
  t.match((failed[0]!.err as { stack: string }).stack, /^ReplyError: WRONGTYPE/, 'the stack names the error')
  t.notOk('command' in (failed[0]!.err as object), 'the command is not logged')
  t.notOk(logs.text().includes(MARKER), 'the arguments reach no log line')
})

t.test('a 500 from an error with a code logs the code', async (t) => {
  const { app, logs } = await startRelay(t, { ADMIN_TOKEN, SUBSCRIBER_CRM_URL: 'http://127.0.0.1:9/hook', SUBSCRIBER_CRM_EVENTS: '*' })
  const error = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6379'), { code: 'ECONNREFUSED', command: { name: 'hset', args: ['k', MARKER] } })
  t.capture(app.redis, 'hmget', () => Promise.reject(error))

  const response = await app.inject({ method: 'GET', url: `/admin/events/${uniqueEventId()}`, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
  t.equal(response.statusCode, 500)
  t.match(logs.lines.find((line) => line.msg === 'request failed'), { err: { message: error.message, code: 'ECONNREFUSED', stack: error.stack } })
  t.notOk(logs.text().includes(MARKER))
})
