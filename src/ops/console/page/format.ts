import type { AttemptRecord, DeliveryView, Subscriber } from './api.js'

/** Every time in UTC, as Persona and the relay's logs write them. */
export function utc(iso: string | undefined): string {
  if (!iso || Number.isNaN(Date.parse(iso))) return '—'
  return `${new Date(iso).toISOString().replace('T', ' ').slice(0, 19)} UTC`
}

export function clock(iso: string): string {
  return new Date(iso).toISOString().slice(11, 16)
}

export function age(ms: number): string {
  const seconds = Math.round(ms / 1000)
  if (seconds < 60) return `${seconds} s`
  const minutes = Math.floor(seconds / 60)
  if (minutes < 60) return `${minutes} min`
  const hours = Math.floor(minutes / 60)
  return hours < 48 ? `${hours} h ${minutes % 60} min` : `${Math.floor(hours / 24)} d ${hours % 24} h`
}

export function duration(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`
}

/** A `datetime-local` value, read as UTC as everything on the page is. */
export function fromUtcInput(value: string): string | undefined {
  return value ? new Date(`${value}Z`).toISOString() : undefined
}

type State = DeliveryView['state']

const STATE_LABELS: Record<State, string> = {
  pending: 'queued',
  delayed: 'retry scheduled',
  active: 'sending',
  completed: 'delivered',
  failed: 'failed',
  paused: 'paused',
  unknown: 'unknown',
  skipped: 'skipped'
}

export function stateLabel(state: State): string {
  return STATE_LABELS[state]
}

/** States a delivery leaves by itself: a page showing one keeps itself up to date. */
export function moving(state: State): boolean {
  return !['completed', 'failed', 'skipped'].includes(state)
}

/** Why a delivery is where it is, in a sentence. */
export function reasonOf(delivery: DeliveryView): string {
  switch (delivery.state) {
    case 'failed':
      return {
        gone: 'Gone: the subscriber answered 410, so it is not retried.',
        expired: 'Expired: the event\'s body expired before it could be sent.',
        redacted: 'Redacted: Persona redacted the object, so its body was removed.',
        exhausted: `Exhausted: all ${delivery.maxAttempts} attempts failed.`
      }[delivery.deadLetterReason ?? 'exhausted']
    case 'skipped':
      return delivery.skipReason === 'stale'
        ? 'Stale: a later event about the same object was delivered first, so this one is not sent.'
        : 'Filtered: the subscriber\'s payload filter refused this event.'
    case 'paused':
      return 'Waiting: the subscriber is paused.'
    case 'delayed':
      return `Retrying: attempt ${delivery.attemptsMade + 1} of ${delivery.maxAttempts} at ${utc(delivery.nextAttemptAt)}.`
    case 'pending':
      return 'Queued: waiting for a free slot.'
    case 'active':
      return 'Being sent.'
    case 'completed':
      return `Delivered at ${utc(delivery.finishedAt)}.`
    case 'unknown':
      return 'Not queued yet, or its history has expired.'
  }
}

/** What came of one attempt: the HTTP status, or the class of error when there was no answer. */
export function outcomeOf(attempt: AttemptRecord): string {
  if (attempt.status !== undefined) return `HTTP ${attempt.status}`
  return (attempt.errorClass ?? attempt.outcome).replace(/_/g, ' ')
}

/** active, paused by operator, or paused by breaker. */
export function subscriberState(subscriber: Subscriber): { label: string; className: string } {
  if (subscriber.state === 'active') return { label: 'active', className: 'state-completed' }
  return subscriber.pauseReason === 'breaker'
    ? { label: 'paused by breaker', className: 'state-failed' }
    : { label: 'paused by operator', className: 'state-paused' }
}
