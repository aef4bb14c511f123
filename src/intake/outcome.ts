import type { FastifyError } from 'fastify'

/** How one intake request ended; the label of logs and, later, metrics. */
export type IntakeOutcome =
  | 'accepted'
  | 'duplicate'
  | 'no_subscriber'
  | 'bad_signature'
  | 'stale_timestamp'
  | 'malformed'
  | 'too_large'
  | 'unsupported_media_type'
  | 'forbidden_ip'
  | 'unavailable'
  /** Recorded, but REDIS_WAIT_REPLICAS replicas did not confirm it in time (503). */
  | 'unconfirmed'
  | 'error'

// A Map so that a code like `toString` finds nothing rather than an Object.prototype member.
const OUTCOME_BY_CODE = new Map<string, IntakeOutcome>([
  ['PERSONA_SIGNATURE_MISSING', 'bad_signature'],
  ['PERSONA_SIGNATURE_MALFORMED', 'bad_signature'],
  ['PERSONA_SIGNATURE_MISMATCH', 'bad_signature'],
  ['PERSONA_SIGNATURE_STALE', 'stale_timestamp'],
  ['INVALID_JSON', 'malformed'],
  ['INVALID_PERSONA_EVENT', 'malformed'],
  ['BAD_REQUEST', 'malformed'],
  ['BODY_TOO_LARGE', 'too_large'],
  ['UNSUPPORTED_MEDIA_TYPE', 'unsupported_media_type'],
  ['FORBIDDEN_SOURCE', 'forbidden_ip'],
  ['STORE_UNAVAILABLE', 'unavailable'],
  ['REPLICAS_UNCONFIRMED', 'unconfirmed']
])

export function outcomeOfError(error: FastifyError): IntakeOutcome {
  return OUTCOME_BY_CODE.get(error.code) ?? 'error'
}
