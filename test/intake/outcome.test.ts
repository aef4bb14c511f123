import t from 'tap'
import { errorCodes, type FastifyError } from 'fastify'
import { Errors, toServiceError } from '../../src/errors.js'
import { outcomeOfError, type IntakeOutcome } from '../../src/intake/outcome.js'

t.test('each of our errors labels the request with its outcome', async (t) => {
  const cases: [keyof typeof Errors, IntakeOutcome][] = [
    ['SIGNATURE_MISSING', 'bad_signature'],
    ['SIGNATURE_MALFORMED', 'bad_signature'],
    ['SIGNATURE_MISMATCH', 'bad_signature'],
    ['SIGNATURE_STALE', 'stale_timestamp'],
    ['INVALID_JSON', 'malformed'],
    ['INVALID_EVENT', 'malformed'],
    ['BAD_REQUEST', 'malformed'],
    ['BODY_TOO_LARGE', 'too_large'],
    ['UNSUPPORTED_MEDIA_TYPE', 'unsupported_media_type'],
    ['STORE_UNAVAILABLE', 'unavailable'],
    ['REPLICAS_UNCONFIRMED', 'unconfirmed'],
    ['FORBIDDEN_SOURCE', 'forbidden_ip'],
    ['NOT_FOUND', 'error'],
    ['INVALID_REQUEST', 'error'],
    ['ADMIN_UNAUTHORIZED', 'error'],
    ['ADMIN_JSON_REQUIRED', 'error'],
    ['EVENT_NOT_FOUND', 'error'],
    ['OBJECT_NOT_FOUND', 'error'],
    ['DELIVERY_NOT_FOUND', 'error'],
    ['DELIVERY_NOT_FAILED', 'error'],
    ['EVENT_REDACTED', 'error'],
    ['DASHBOARD_ACTION_DISABLED', 'error'],
    ['SUBSCRIBER_NOT_FOUND', 'error'],
    ['BACKFILL_NOT_CONFIGURED', 'error'],
    ['BACKFILL_NOT_FOUND', 'error'],
    ['BACKFILL_RUNNING', 'error'],
    ['INVALID_BACKFILL_RANGE', 'error'],
    ['PERSONA_API_UNAUTHORIZED', 'error'],
    ['PERSONA_API_REJECTED', 'error'],
    ['PERSONA_API_UNAVAILABLE', 'error'],
    ['PERSONA_API_BAD_RESPONSE', 'error'],
    ['BACKFILL_INTERRUPTED', 'error'],
    ['INTERNAL', 'error']
  ]
  t.same(Object.keys(Errors).sort(), cases.map(([key]) => key).sort(), 'the table covers every error')
  for (const [key, expected] of cases) t.equal(outcomeOfError(new Errors[key]()), expected, key)
})

t.test("Fastify's errors, once normalised, get the outcome of the error they become", async (t) => {
  const cases: [string, FastifyError, IntakeOutcome][] = [
    ['invalid media type', new errorCodes.FST_ERR_CTP_INVALID_MEDIA_TYPE(), 'unsupported_media_type'],
    ['body too large', new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE(), 'too_large'],
    ['empty JSON body', new errorCodes.FST_ERR_CTP_EMPTY_JSON_BODY(), 'malformed'],
    ['content length mismatch', new errorCodes.FST_ERR_CTP_INVALID_CONTENT_LENGTH(), 'malformed'],
    ['a crash', new Error('boom') as FastifyError, 'error']
  ]
  for (const [label, error, expected] of cases) t.equal(outcomeOfError(toServiceError(error)), expected, label)
})

t.test('an unknown code is a plain error', async (t) => {
  for (const code of ['SOMETHING_NEW', 'FST_ERR_CTP_BODY_TOO_LARGE', '']) {
    t.equal(outcomeOfError(Object.assign(new Error('x'), { code }) as FastifyError), 'error', JSON.stringify(code))
  }
})

t.test('regression: a code naming an Object.prototype member is a plain error, not that member', async (t) => {
  for (const code of ['toString', '__proto__', 'constructor', 'hasOwnProperty', 'valueOf']) {
    t.equal(outcomeOfError(Object.assign(new Error('x'), { code }) as FastifyError), 'error', JSON.stringify(code))
  }
})
