import Type, { type Static } from 'typebox'

/**
 * The shapes and lists of the delivery engine, written once. It imports nothing of ours, so that
 * every module of the engine, the admin API and the metrics may import it without a cycle.
 */

export const ATTEMPT_OUTCOMES = ['success', 'http_error', 'timeout', 'network_error'] as const
export type AttemptOutcome = (typeof ATTEMPT_OUTCOMES)[number]

/** `client`: our own HTTP client refused the request before sending a byte (retry-policy.ts). */
export const ERROR_CLASSES = ['timeout', 'connection_refused', 'connection_reset', 'dns', 'tls', 'network', 'client'] as const
export type ErrorClass = (typeof ERROR_CLASSES)[number]

/** The states the admin API reports; `paused` is waiting or delayed in a paused subscriber's queue. */
export const DELIVERY_STATES = ['pending', 'delayed', 'active', 'completed', 'failed', 'paused'] as const
export type DeliveryState = (typeof DELIVERY_STATES)[number]

/**
 * Why a routed subscriber was not sent an event at all: its payload filter refused it, or it was
 * older than one already delivered for its object (SUBSCRIBER_<NAME>_STALE=skip).
 */
export const SKIP_REASONS = ['filtered', 'stale'] as const
export type SkipReason = (typeof SKIP_REASONS)[number]

/**
 * Why a dead letter stopped: a 410, its body expired before it could be sent, every attempt spent,
 * or Persona redacted the event's object and its body was removed.
 */
export const DEAD_LETTER_REASONS = ['gone', 'expired', 'exhausted', 'redacted'] as const
export type DeadLetterReason = (typeof DEAD_LETTER_REASONS)[number]

/** One line of a delivery's attempt history. */
export const AttemptSchema = Type.Object({
  attempt: Type.Integer(),
  at: Type.String(),
  durationMs: Type.Number(),
  outcome: Type.Enum([...ATTEMPT_OUTCOMES]),
  status: Type.Optional(Type.Integer()),
  errorClass: Type.Optional(Type.Enum([...ERROR_CLASSES])),
  /** The first KiB of the subscriber's answer. */
  response: Type.Optional(Type.String()),
  /** Made by the circuit breaker's probe while the subscriber was paused. */
  probe: Type.Optional(Type.Boolean())
})
export type AttemptRecord = Static<typeof AttemptSchema>

/** One subscriber's delivery of one event, as the admin API shows it. */
export const DeliverySchema = Type.Object({
  id: Type.String(),
  subscriber: Type.String(),
  eventId: Type.String(),
  eventName: Type.String(),
  /** `unknown`: not queued yet, or its history expired; `skipped`: never to be sent (skipReason). */
  state: Type.Enum([...DELIVERY_STATES, 'unknown', 'skipped']),
  skipReason: Type.Optional(Type.Enum([...SKIP_REASONS])),
  attemptsMade: Type.Integer(),
  maxAttempts: Type.Integer(),
  queuedAt: Type.String(),
  finishedAt: Type.Optional(Type.String()),
  nextAttemptAt: Type.Optional(Type.String()),
  failedReason: Type.Optional(Type.String()),
  deadLetterReason: Type.Optional(Type.Enum([...DEAD_LETTER_REASONS])),
  attempts: Type.Array(AttemptSchema)
})
export type DeliveryView = Static<typeof DeliverySchema>

/** What a delivery carries: metadata only, the body is stored once per event (store/event-bodies.ts). */
export interface DeliveryData {
  eventId: string
  eventName: string
  createdAt: string
  receivedAt: string
  source: string
  /** The Persona object the event is about, when it names one: what ordered subscribers order by. */
  objectId?: string
  /** The intake span's W3C traceparent (tracing on): each attempt's span links to it. */
  traceparent?: string
  /** The first attempt, made by fan-out, when it failed and handed the delivery to its queue. */
  firstAttempt?: AttemptRecord
  /** What retry-policy.ts made of that attempt (a 410, or a Retry-After to honour). */
  firstVerdict?: AttemptVerdict
  /** Replayed by an operator: its attempts start afresh, the first attempt is history only. */
  replayed?: true
}

/** What one HTTP attempt came to. */
export interface AttemptResult {
  outcome: AttemptOutcome
  status?: number
  errorClass?: ErrorClass
  durationMs: number
  /** The first bytes of the subscriber's answer, for the attempt history. */
  responseExcerpt?: string
  /** The subscriber's Retry-After header, if it sent one. */
  retryAfter?: string
}

export type AttemptVerdict =
  | { kind: 'delivered' }
  /** 410 Gone: the subscriber says this endpoint will never take it; retrying is pointless. */
  | { kind: 'gone' }
  | { kind: 'retry'; retryAfterMs?: number }

/** What an attempt did, and its line in the delivery's history. */
export interface AttemptReport {
  result: AttemptResult
  verdict: AttemptVerdict
  record: AttemptRecord
}

/** `<SUBSCRIBER>.<event id>`: subscriber names have no dot, event ids neither. */
export function deliveryId(subscriber: string, eventId: string): string {
  return `${subscriber}.${eventId}`
}

export function parseDeliveryId(id: string): { subscriber: string; eventId: string } | undefined {
  const dot = id.indexOf('.')
  if (dot <= 0 || dot === id.length - 1) return undefined
  return { subscriber: id.slice(0, dot), eventId: id.slice(dot + 1) }
}
