import t from 'tap'
import { MAX_RETRY_AFTER_MS } from '../../src/retry-after.js'
import { countsTowardsBreaker, judgeAttempt } from '../../src/delivery/retry-policy.js'
import type { AttemptResult, AttemptVerdict } from '../../src/delivery/types.js'

const NOW = Date.parse('2026-11-27T10:00:00.000Z')

function answered(status: number, retryAfter?: string): AttemptResult {
  return {
    outcome: status >= 200 && status < 300 ? 'success' : 'http_error',
    status,
    durationMs: 12,
    ...(retryAfter !== undefined ? { retryAfter } : {})
  }
}

function failed(errorClass: NonNullable<AttemptResult['errorClass']>): AttemptResult {
  return { outcome: errorClass === 'timeout' ? 'timeout' : 'network_error', errorClass, durationMs: 12 }
}

const DELIVERED: AttemptVerdict = { kind: 'delivered' }
const GONE: AttemptVerdict = { kind: 'gone' }
const RETRY: AttemptVerdict = { kind: 'retry' }

t.test('every 2xx is delivered', async (t) => {
  for (const status of [200, 201, 202, 204, 299]) t.same(judgeAttempt(answered(status), NOW), DELIVERED, `HTTP ${status}`)
})

t.test('410 Gone stops retrying, whatever else the answer says', async (t) => {
  t.same(judgeAttempt(answered(410), NOW), GONE)
  t.same(judgeAttempt(answered(410, '60'), NOW), GONE)
})

t.test('429 and 503 honour Retry-After in seconds or as an HTTP date', async (t) => {
  const cases: [number, string, number][] = [
    [429, '1', 1000],
    [429, '120', 120_000],
    [503, '0', 0],
    [503, 'Fri, 27 Nov 2026 10:00:30 GMT', 30_000],
    [429, 'Fri, 27 Nov 2026 09:00:00 GMT', 0],
    [503, '172800', MAX_RETRY_AFTER_MS]
  ]
  for (const [status, retryAfter, retryAfterMs] of cases) {
    t.same(judgeAttempt(answered(status, retryAfter), NOW), { kind: 'retry', retryAfterMs }, `HTTP ${status}, Retry-After: ${retryAfter}`)
  }
})

t.test('429 and 503 without a readable Retry-After are retried on the schedule', async (t) => {
  for (const status of [429, 503]) {
    t.same(judgeAttempt(answered(status), NOW), RETRY, `HTTP ${status} without Retry-After`)
    t.same(judgeAttempt(answered(status, 'later'), NOW), RETRY, `HTTP ${status} with garbage`)
  }
})

t.test('Retry-After is ignored on any other status', async (t) => {
  for (const status of [408, 500, 502, 504, 404, 301]) {
    t.same(judgeAttempt(answered(status, '60'), NOW), RETRY, `HTTP ${status} with Retry-After: 60`)
  }
})

t.test('408, other 4xx, 5xx and 3xx are retried on the schedule', async (t) => {
  for (const status of [408, 400, 401, 403, 404, 409, 422, 500, 501, 502, 504, 599, 301, 302, 304, 307, 308]) {
    t.same(judgeAttempt(answered(status), NOW), RETRY, `HTTP ${status}`)
  }
})

t.test('timeouts, every kind of network failure and client errors are retried on the schedule', async (t) => {
  for (const errorClass of ['timeout', 'connection_refused', 'connection_reset', 'dns', 'tls', 'network', 'client'] as const) {
    t.same(judgeAttempt(failed(errorClass), NOW), RETRY, errorClass)
  }
})

t.test('every failure counts towards the breaker but a request our own client refused', async (t) => {
  const cases: [string, AttemptResult, boolean][] = [
    ['HTTP 200', answered(200), false],
    ['HTTP 204', answered(204), false],
    ['HTTP 500', answered(500), true],
    ['HTTP 410', answered(410), true],
    ['HTTP 429', answered(429, '1'), true],
    ...(['timeout', 'connection_refused', 'connection_reset', 'dns', 'tls', 'network'] as const).map(
      (errorClass): [string, AttemptResult, boolean] => [errorClass, failed(errorClass), true]
    ),
    ['client', failed('client'), false]
  ]
  for (const [what, result, counts] of cases) t.equal(countsTowardsBreaker(result), counts, what)
})
