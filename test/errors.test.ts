import t from 'tap'
import { errorCodes, type FastifyError } from 'fastify'
import createError from '@fastify/error'
import Value from 'typebox/value'
import { ErrorResponse, Errors, errorBody, loggableError, toServiceError } from '../src/errors.js'

function withStatus(message: string, statusCode: number | undefined, code?: string): FastifyError {
  return Object.assign(new Error(message), { statusCode, code }) as FastifyError
}

t.test('every error has a stable upper-snake code, a status and a fixed message', async (t) => {
  const cases: [keyof typeof Errors, string, number][] = [
    ['SIGNATURE_MISSING', 'PERSONA_SIGNATURE_MISSING', 401],
    ['SIGNATURE_MALFORMED', 'PERSONA_SIGNATURE_MALFORMED', 401],
    ['SIGNATURE_MISMATCH', 'PERSONA_SIGNATURE_MISMATCH', 401],
    ['SIGNATURE_STALE', 'PERSONA_SIGNATURE_STALE', 401],
    ['INVALID_JSON', 'INVALID_JSON', 400],
    ['INVALID_EVENT', 'INVALID_PERSONA_EVENT', 422],
    ['BODY_TOO_LARGE', 'BODY_TOO_LARGE', 413],
    ['UNSUPPORTED_MEDIA_TYPE', 'UNSUPPORTED_MEDIA_TYPE', 415],
    ['NOT_FOUND', 'NOT_FOUND', 404],
    ['STORE_UNAVAILABLE', 'STORE_UNAVAILABLE', 503],
    ['REPLICAS_UNCONFIRMED', 'REPLICAS_UNCONFIRMED', 503],
    ['BAD_REQUEST', 'BAD_REQUEST', 400],
    ['INTERNAL', 'INTERNAL_ERROR', 500],
    ['FORBIDDEN_SOURCE', 'FORBIDDEN_SOURCE', 403],
    ['INVALID_REQUEST', 'INVALID_REQUEST', 400],
    ['ADMIN_UNAUTHORIZED', 'ADMIN_UNAUTHORIZED', 401],
    ['ADMIN_JSON_REQUIRED', 'ADMIN_JSON_REQUIRED', 403],
    ['EVENT_NOT_FOUND', 'EVENT_NOT_FOUND', 404],
    ['OBJECT_NOT_FOUND', 'OBJECT_NOT_FOUND', 404],
    ['DELIVERY_NOT_FOUND', 'DELIVERY_NOT_FOUND', 404],
    ['DELIVERY_NOT_FAILED', 'DELIVERY_NOT_FAILED', 409],
    ['EVENT_REDACTED', 'EVENT_REDACTED', 409],
    ['DASHBOARD_ACTION_DISABLED', 'DASHBOARD_ACTION_DISABLED', 409],
    ['SUBSCRIBER_NOT_FOUND', 'SUBSCRIBER_NOT_FOUND', 404],
    ['BACKFILL_NOT_CONFIGURED', 'BACKFILL_NOT_CONFIGURED', 404],
    ['BACKFILL_NOT_FOUND', 'BACKFILL_NOT_FOUND', 404],
    ['BACKFILL_RUNNING', 'BACKFILL_RUNNING', 409],
    ['INVALID_BACKFILL_RANGE', 'INVALID_BACKFILL_RANGE', 400],
    ['PERSONA_API_UNAUTHORIZED', 'PERSONA_API_UNAUTHORIZED', 502],
    ['PERSONA_API_REJECTED', 'PERSONA_API_REJECTED', 502],
    ['PERSONA_API_UNAVAILABLE', 'PERSONA_API_UNAVAILABLE', 502],
    ['PERSONA_API_BAD_RESPONSE', 'PERSONA_API_BAD_RESPONSE', 502],
    ['BACKFILL_INTERRUPTED', 'BACKFILL_INTERRUPTED', 503]
  ]
  t.same(Object.keys(Errors).sort(), cases.map(([key]) => key).sort(), 'the table covers every error')
  for (const [key, code, statusCode] of cases) {
    const error = new Errors[key]()
    t.match(error, { code, statusCode }, key)
    t.match(error.code, /^[A-Z]+(_[A-Z]+)*$/)
    t.ok(error.message.length > 0)
  }
})

t.test("Fastify's client errors map onto ours", async (t) => {
  const cases: [string, FastifyError, string, number][] = [
    ['invalid media type', new errorCodes.FST_ERR_CTP_INVALID_MEDIA_TYPE(), 'UNSUPPORTED_MEDIA_TYPE', 415],
    ['body too large', new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE(), 'BODY_TOO_LARGE', 413],
    ['empty JSON body', new errorCodes.FST_ERR_CTP_EMPTY_JSON_BODY(), 'INVALID_JSON', 400],
    ['invalid JSON body', new errorCodes.FST_ERR_CTP_INVALID_JSON_BODY(), 'INVALID_JSON', 400],
    ['content length mismatch', new errorCodes.FST_ERR_CTP_INVALID_CONTENT_LENGTH(), 'BAD_REQUEST', 400],
    ['not found', new errorCodes.FST_ERR_NOT_FOUND(), 'NOT_FOUND', 404]
  ]
  for (const [label, error, code, statusCode] of cases) {
    const mapped = toServiceError(error)
    t.match(mapped, { code, statusCode }, label)
    t.ok(Object.values(Errors).some((ErrorType) => mapped instanceof ErrorType), `${label} becomes one of ours`)
  }
})

t.test('a SyntaxError with status 400 from a JSON parser is INVALID_JSON', async (t) => {
  let syntaxError: SyntaxError | undefined
  try {
    JSON.parse('{"data":')
  } catch (error) {
    syntaxError = error as SyntaxError
  }
  t.match(toServiceError(Object.assign(syntaxError!, { statusCode: 400 })), { code: 'INVALID_JSON', statusCode: 400 })
  t.match(toServiceError(new SyntaxError('Unexpected token')), { code: 'INTERNAL_ERROR', statusCode: 500 }, 'without a status it is ours to fix')
})

t.test('our own errors pass through unchanged', async (t) => {
  for (const ErrorType of Object.values(Errors)) {
    const error = new ErrorType()
    t.equal(toServiceError(error), error, error.code)
  }
})

t.test('an error from another library with a code of its own is not passed through', async (t) => {
  const Foreign = createError('SOMETHING_ELSE', 'secret=hunter2 in a message', 409)
  t.match(toServiceError(new Foreign()), { code: 'BAD_REQUEST', statusCode: 400, message: 'The request is malformed' })
  const Unavailable = createError('UPSTREAM_DOWN', 'redis://admin:pw@redis:6379 refused', 503)
  t.match(toServiceError(new Unavailable()), { code: 'INTERNAL_ERROR', statusCode: 500, message: 'Internal error' })
})

t.test('other errors are classified by status with a generic message', async (t) => {
  const cases: [string, FastifyError, string, number, string][] = [
    ['unknown 400', withStatus('bad header x-secret: 123', 400), 'BAD_REQUEST', 400, 'The request is malformed'],
    ['unknown 409', withStatus('conflict on evt_1', 409, 'FST_SOMETHING'), 'BAD_REQUEST', 400, 'The request is malformed'],
    ['unknown 499', withStatus('client closed', 499), 'BAD_REQUEST', 400, 'The request is malformed'],
    ['404', withStatus('Route POST:/x?token=abc not found', 404), 'NOT_FOUND', 404, 'No such route'],
    ['unknown 500', withStatus('ECONNREFUSED 10.0.0.5:6379', 500), 'INTERNAL_ERROR', 500, 'Internal error'],
    ['unknown 503', withStatus('redis password wrong', 503), 'INTERNAL_ERROR', 500, 'Internal error'],
    ['no status', new Error('TypeError: cannot read x of undefined') as FastifyError, 'INTERNAL_ERROR', 500, 'Internal error'],
    ['a status below 400', withStatus('odd', 302), 'INTERNAL_ERROR', 500, 'Internal error'],
    ['a plain TypeError', new TypeError('boom') as FastifyError, 'INTERNAL_ERROR', 500, 'Internal error']
  ]
  for (const [label, error, code, statusCode, message] of cases) {
    t.match(toServiceError(error), { code, statusCode, message }, label)
  }
})

t.test('regression: a code naming an Object.prototype member is classified by status like any other', async (t) => {
  for (const code of ['constructor', 'toString', '__proto__', 'hasOwnProperty', 'valueOf']) {
    t.match(toServiceError(withStatus('x', 400, code)), { code: 'BAD_REQUEST', statusCode: 400 }, `${code} with 400`)
    const mapped = toServiceError(withStatus('x', undefined, code))
    t.ok(mapped instanceof Errors.INTERNAL, `${code} without a status`)
  }
})

t.test('errorBody gives statusCode, code, the status text and the message', async (t) => {
  const cases: [FastifyError, ErrorResponse][] = [
    [
      new Errors.SIGNATURE_MISMATCH(),
      {
        statusCode: 401,
        code: 'PERSONA_SIGNATURE_MISMATCH',
        error: 'Unauthorized',
        message: 'No signature in the Persona-Signature header matches the body under a configured secret'
      }
    ],
    [new Errors.INVALID_EVENT(), { statusCode: 422, code: 'INVALID_PERSONA_EVENT', error: 'Unprocessable Entity', message: 'The body is not a Persona event envelope' }],
    [new Errors.STORE_UNAVAILABLE(), { statusCode: 503, code: 'STORE_UNAVAILABLE', error: 'Service Unavailable', message: 'The event could not be recorded; retry later' }],
    [new Errors.INTERNAL(), { statusCode: 500, code: 'INTERNAL_ERROR', error: 'Internal Server Error', message: 'Internal error' }],
    [withStatus('no status', undefined, 'X'), { statusCode: 500, code: 'X', error: 'Internal Server Error', message: 'no status' }],
    [withStatus('odd status', 599, 'Y'), { statusCode: 599, code: 'Y', error: 'Error', message: 'odd status' }]
  ]
  for (const [error, expected] of cases) {
    const body = errorBody(error)
    t.same(body, expected, expected.code)
    t.ok(Value.Check(ErrorResponse, body), `${expected.code} body matches ErrorResponse`)
  }
})

t.test('errorBody carries exactly the four documented fields', async (t) => {
  t.same(Object.keys(errorBody(new Errors.NOT_FOUND())).sort(), ['code', 'error', 'message', 'statusCode'])
})

t.test('loggableError keeps the message, the code and the stack, and nothing a library attached', async (t) => {
  const redisLike = Object.assign(new Error('WRONGTYPE Operation against a key holding the wrong kind of value'), {
    command: { name: 'hset', args: ['persona-relay:body:evt_1', '{"email":"alex@example.test"}'] },
    previousErrors: [new Error('alex@example.test')],
    args: ['alex@example.test']
  })
  t.same(loggableError(redisLike), { type: 'Error', message: redisLike.message, stack: redisLike.stack })
  t.notMatch(JSON.stringify(loggableError(redisLike)), 'alex@example.test')

  const withCode = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })
  t.same(loggableError(withCode), { type: 'Error', message: withCode.message, code: 'ECONNREFUSED', stack: withCode.stack })
  t.match(loggableError(Object.assign(new Error('bullmq'), { code: -8 })), { code: -8 }, 'a numeric code, as BullMQ gives')
  t.notOk('code' in loggableError(Object.assign(new Error('odd'), { code: { args: ['x'] } })), 'a code that is not a string or number is dropped')
  const ours = new Errors.INTERNAL()
  t.same(loggableError(ours), { type: ours.name, message: 'Internal error', code: 'INTERNAL_ERROR', stack: ours.stack }, 'our own errors too')
})
