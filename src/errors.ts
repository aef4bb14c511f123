import { STATUS_CODES } from 'node:http'
import createError from '@fastify/error'
import type { FastifyError } from 'fastify'
import Type, { type Static } from 'typebox'

/**
 * Every error the relay answers with. Codes are stable (clients and alerts key on them) and no
 * message contains request data.
 */
export const Errors = {
  SIGNATURE_MISSING: createError('PERSONA_SIGNATURE_MISSING', 'The Persona-Signature header is missing', 401),
  SIGNATURE_MALFORMED: createError(
    'PERSONA_SIGNATURE_MALFORMED',
    'The Persona-Signature header is not of the form t=<unix seconds>,v1=<hex>',
    401
  ),
  SIGNATURE_MISMATCH: createError(
    'PERSONA_SIGNATURE_MISMATCH',
    'No signature in the Persona-Signature header matches the body under a configured secret',
    401
  ),
  SIGNATURE_STALE: createError(
    'PERSONA_SIGNATURE_STALE',
    'The signature timestamp is outside the accepted window',
    401
  ),
  INVALID_JSON: createError('INVALID_JSON', 'The body is not valid UTF-8 JSON', 400),
  INVALID_EVENT: createError('INVALID_PERSONA_EVENT', 'The body is not a Persona event envelope', 422),
  BODY_TOO_LARGE: createError('BODY_TOO_LARGE', 'The body exceeds the configured limit', 413),
  UNSUPPORTED_MEDIA_TYPE: createError('UNSUPPORTED_MEDIA_TYPE', 'The body must be application/json', 415),
  NOT_FOUND: createError('NOT_FOUND', 'No such route', 404),
  FORBIDDEN_SOURCE: createError('FORBIDDEN_SOURCE', 'Webhooks are not accepted from this address', 403),
  STORE_UNAVAILABLE: createError(
    'STORE_UNAVAILABLE',
    'The event could not be recorded; retry later',
    503
  ),
  /** Recorded, but REDIS_WAIT_REPLICAS replicas did not confirm it in time: Persona's retry is a duplicate, confirmed again. */
  REPLICAS_UNCONFIRMED: createError(
    'REPLICAS_UNCONFIRMED',
    'The event was recorded, but not yet confirmed by enough Redis replicas; retry later',
    503
  ),
  BAD_REQUEST: createError('BAD_REQUEST', 'The request is malformed', 400),
  /** %s is the schema rule that failed (a path and a constraint, never the value sent). */
  INVALID_REQUEST: createError('INVALID_REQUEST', 'Invalid request: %s', 400),
  ADMIN_UNAUTHORIZED: createError(
    'ADMIN_UNAUTHORIZED',
    'A valid admin token is required: as a Bearer token, or as the password of HTTP Basic',
    401
  ),
  ADMIN_JSON_REQUIRED: createError(
    'ADMIN_JSON_REQUIRED',
    'A change signed in with HTTP Basic must be sent as application/json, which a page of another site cannot send',
    403
  ),
  EVENT_NOT_FOUND: createError('EVENT_NOT_FOUND', 'No such event is recorded', 404),
  OBJECT_NOT_FOUND: createError('OBJECT_NOT_FOUND', 'No recorded event is about this object', 404),
  DELIVERY_NOT_FOUND: createError('DELIVERY_NOT_FOUND', 'No such delivery', 404),
  DELIVERY_NOT_FAILED: createError('DELIVERY_NOT_FAILED', 'Only a failed delivery can be retried', 409),
  EVENT_REDACTED: createError('EVENT_REDACTED', 'Persona redacted this event\'s object; its body was removed and it cannot be sent again', 409),
  DASHBOARD_ACTION_DISABLED: createError(
    'DASHBOARD_ACTION_DISABLED',
    'The dashboard does not remove deliveries: the relay tracks their event bodies apart and would keep them without a delivery; retry a failed delivery or let retention remove it',
    409
  ),
  SUBSCRIBER_NOT_FOUND: createError('SUBSCRIBER_NOT_FOUND', 'No such subscriber is configured', 404),
  BACKFILL_NOT_CONFIGURED: createError('BACKFILL_NOT_CONFIGURED', 'Backfill needs PERSONA_API_KEY, which is not set', 404),
  BACKFILL_NOT_FOUND: createError('BACKFILL_NOT_FOUND', 'No such backfill (they are kept for 7 days)', 404),
  BACKFILL_RUNNING: createError('BACKFILL_RUNNING', 'A backfill is already running', 409),
  /** %s is the rule the range broke (never the value sent). */
  INVALID_BACKFILL_RANGE: createError('INVALID_BACKFILL_RANGE', 'Invalid backfill range: %s', 400),
  /** Persona's Events API: these end a backfill run and are shown in its status, never answered to a request. */
  PERSONA_API_UNAUTHORIZED: createError(
    'PERSONA_API_UNAUTHORIZED',
    'Persona refused PERSONA_API_KEY (HTTP %s): check that the key exists, is not expired or rotated, and may list events',
    502
  ),
  PERSONA_API_REJECTED: createError('PERSONA_API_REJECTED', 'Persona rejected the events request (HTTP %s)', 502),
  PERSONA_API_UNAVAILABLE: createError('PERSONA_API_UNAVAILABLE', 'Persona\'s Events API did not answer successfully after %s attempts (%s)', 502),
  PERSONA_API_BAD_RESPONSE: createError('PERSONA_API_BAD_RESPONSE', 'Persona\'s Events API answered something unexpected: %s', 502),
  BACKFILL_INTERRUPTED: createError('BACKFILL_INTERRUPTED', 'The backfill stopped before it finished (shutdown or lost lock)', 503),
  INTERNAL: createError('INTERNAL_ERROR', 'Internal error', 500)
} as const

export const ErrorResponse = Type.Object({
  statusCode: Type.Integer(),
  code: Type.String(),
  error: Type.String(),
  message: Type.String()
})

export type ErrorResponse = Static<typeof ErrorResponse>

/**
 * Fastify's own errors that a client can cause, mapped onto ours so that every body has our codes.
 * A Map, not an object literal: a thrown error's code such as `constructor` must not find a prototype member.
 */
const FRAMEWORK_ERRORS = new Map<string, () => FastifyError>([
  ['FST_ERR_CTP_INVALID_MEDIA_TYPE', () => new Errors.UNSUPPORTED_MEDIA_TYPE()],
  ['FST_ERR_CTP_BODY_TOO_LARGE', () => new Errors.BODY_TOO_LARGE()],
  ['FST_ERR_CTP_EMPTY_JSON_BODY', () => new Errors.INVALID_JSON()],
  ['FST_ERR_CTP_INVALID_JSON_BODY', () => new Errors.INVALID_JSON()]
])

/** Normalises anything thrown while handling a request into one of our errors. */
export function toServiceError(error: FastifyError | Error): FastifyError {
  const fastifyError = error as FastifyError
  const mapped = FRAMEWORK_ERRORS.get(fastifyError.code)
  if (mapped) return mapped()
  if (fastifyError.code === 'FST_ERR_VALIDATION') return new Errors.INVALID_REQUEST(fastifyError.message)
  if (error instanceof SyntaxError && fastifyError.statusCode === 400) return new Errors.INVALID_JSON()
  if (fastifyError.code && Object.values(Errors).some((ErrorType) => error instanceof ErrorType)) return fastifyError
  const status = fastifyError.statusCode ?? 500
  if (status === 404) return new Errors.NOT_FOUND()
  if (status >= 400 && status < 500) return new Errors.BAD_REQUEST()
  return new Errors.INTERNAL()
}

export interface LoggableError {
  [key: string]: unknown
  type: string
  message: string
  code?: string | number
  stack: string
}

/**
 * The part of an unexpected error a log line may hold. Pino's serializer copies every property,
 * and ioredis attaches the failed command with its arguments (`command.args`), which can be an
 * event body: personal data. Used as the logger's `err` serializer, so it applies to every line.
 */
export function loggableError(error: Error): LoggableError {
  const { code } = error as { code?: unknown }
  return {
    type: error.name ?? 'Error',
    message: error.message,
    ...(typeof code === 'string' || typeof code === 'number' ? { code } : {}),
    stack: error.stack ?? ''
  }
}

export function errorBody(error: FastifyError): ErrorResponse {
  const statusCode = error.statusCode ?? 500
  return {
    statusCode,
    code: error.code,
    error: STATUS_CODES[statusCode] ?? 'Error',
    message: error.message
  }
}
