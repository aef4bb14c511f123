import t from 'tap'
import { MAX_RETRY_AFTER_MS, parseRetryAfter } from '../src/retry-after.js'

const NOW = Date.parse('2026-11-27T10:00:00.000Z')
const DAY_MS = 24 * 60 * 60 * 1000

t.test('the cap is one day', async (t) => {
  t.equal(MAX_RETRY_AFTER_MS, DAY_MS)
})

t.test('delta-seconds become milliseconds', async (t) => {
  const cases: [string, number][] = [
    ['0', 0],
    ['1', 1000],
    ['120', 120_000],
    [' 30 ', 30_000],
    ['007', 7000]
  ]
  for (const [value, expected] of cases) t.equal(parseRetryAfter(value, NOW), expected, JSON.stringify(value))
})

t.test('an HTTP date in the future is the time left until then, in each of the three RFC 9110 forms', async (t) => {
  const cases: [string, number][] = [
    ['Fri, 27 Nov 2026 10:00:30 GMT', 30_000],
    ['Friday, 27-Nov-26 10:02:00 GMT', 120_000],
    ['Fri Nov 27 11:00:00 2026', 3_600_000]
  ]
  for (const [value, expected] of cases) t.equal(parseRetryAfter(value, NOW), expected, value)
})

t.test('an HTTP date in the past or right now means retry at once', async (t) => {
  t.equal(parseRetryAfter('Fri, 27 Nov 2026 09:59:59 GMT', NOW), 0)
  t.equal(parseRetryAfter('Sun, 06 Nov 1994 08:49:37 GMT', NOW), 0)
  t.equal(parseRetryAfter('Fri, 27 Nov 2026 10:00:00 GMT', NOW), 0)
})

t.test('an absent header leaves the retry schedule in charge', async (t) => {
  t.equal(parseRetryAfter(undefined, NOW), undefined)
})

t.test('garbage leaves the retry schedule in charge', async (t) => {
  const garbage = ['', ' ', 'soon', 'tomorrow', '120s', '5 minutes', 'Friday', 'NaN', 'Infinity', '0x10', '1e3',
    'Fri, 99 Nov 2026 10:00:00 GMT', 'Mon, 27 Foo 2026 10:00:00 GMT']
  for (const value of garbage) t.equal(parseRetryAfter(value, NOW), undefined, JSON.stringify(value))
})

// Regression: Date.parse is lenient and read these as dates in 2001, so a 429 carrying one was
// retried at once instead of on the schedule.
t.test('numbers that are not delta-seconds are not read as dates', async (t) => {
  for (const value of ['1.5', '-5', '+5', 'soon 2', '12 13']) {
    t.equal(parseRetryAfter(value, NOW), undefined, JSON.stringify(value))
  }
})

t.test('a subscriber cannot ask for more than a day, in seconds or as a date', async (t) => {
  t.equal(parseRetryAfter('86400', NOW), DAY_MS, 'exactly a day is allowed')
  t.equal(parseRetryAfter('86401', NOW), DAY_MS)
  t.equal(parseRetryAfter('31536000', NOW), DAY_MS)
  t.equal(parseRetryAfter('99999999999999999999999', NOW), DAY_MS)
  t.equal(parseRetryAfter('Sun, 29 Nov 2026 10:00:00 GMT', NOW), DAY_MS)
  t.equal(parseRetryAfter('Sat, 28 Nov 2026 09:59:59 GMT', NOW), DAY_MS - 1000, 'just under a day is kept as it is')
})
