/** A subscriber may ask for a pause, but not one longer than a day. */
export const MAX_RETRY_AFTER_MS = 24 * 60 * 60 * 1000

const SECONDS = /^\s*\d+\s*$/
/**
 * The three HTTP date forms (RFC 9110 §5.6.7) open with a day name and hold a time. Date.parse alone
 * is too lenient: it reads `1.5` or `-5` as dates in 2001, which would mean "retry at once".
 */
const HTTP_DATE = /^\s*(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*,?\s.*\d\d:\d\d:\d\d/

/**
 * Milliseconds a `Retry-After` header asks to wait: delta-seconds or an HTTP date (RFC 9110 §10.2.3).
 * Undefined when the header is absent or unreadable, so that the retry schedule applies.
 */
export function parseRetryAfter(value: string | undefined, nowMs: number): number | undefined {
  if (value === undefined) return undefined
  let delayMs: number
  if (SECONDS.test(value)) {
    delayMs = Number(value) * 1000
  } else {
    const at = HTTP_DATE.test(value) ? Date.parse(value) : Number.NaN
    if (Number.isNaN(at)) return undefined
    delayMs = Math.max(at - nowMs, 0)
  }
  return Math.min(delayMs, MAX_RETRY_AFTER_MS)
}
