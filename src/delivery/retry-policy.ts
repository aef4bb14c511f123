import { parseRetryAfter } from '../retry-after.js'
import type { AttemptResult, AttemptVerdict } from './types.js'

/** Statuses whose Retry-After is honoured: the subscriber is asking us to slow down. */
const RETRY_AFTER_STATUSES = new Set([429, 503])

/**
 * What to do after an attempt. Everything but a 2xx and a 410 is retried on the schedule: 408,
 * 429 and 5xx obviously, other 4xx because subscribers deploy fixes, 3xx because redirects are not
 * followed. A request our own client refused (errorClass `client`) is retried too: it is our
 * mistake, usually in configuration, and the retry after the fix is deployed delivers it.
 */
export function judgeAttempt(result: AttemptResult, nowMs: number): AttemptVerdict {
  if (result.outcome === 'success') return { kind: 'delivered' }
  if (result.status === 410) return { kind: 'gone' }
  if (result.status !== undefined && RETRY_AFTER_STATUSES.has(result.status)) {
    const retryAfterMs = parseRetryAfter(result.retryAfter, nowMs)
    if (retryAfterMs !== undefined) return { kind: 'retry', retryAfterMs }
  }
  return { kind: 'retry' }
}

/**
 * Whether a failed attempt counts towards the subscriber's circuit breaker. A request our own client
 * refused never reached the subscriber: it says nothing of its health, and counted, events the
 * client cannot send would pause the subscriber for every other event.
 */
export function countsTowardsBreaker(result: AttemptResult): boolean {
  return result.outcome !== 'success' && result.errorClass !== 'client'
}
