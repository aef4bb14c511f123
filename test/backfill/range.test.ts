import t from 'tap'
import { API_WINDOW_MS, maxBackfillAgeMs, parseTimeArgument, resolveRange } from '../../src/backfill/range.js'

const NOW = Date.parse('2026-11-27T12:00:00.000Z')
const DAY = 86_400_000

t.test('durations count back from now; ISO times need a zone when they have a time', async (t) => {
  const vectors: [string, number | undefined][] = [
    ['90s', NOW - 90_000],
    ['30m', NOW - 30 * 60_000],
    ['2h', NOW - 2 * 3_600_000],
    ['7d', NOW - 7 * DAY],
    [' 2h ', NOW - 2 * 3_600_000],
    ['0m', NOW],
    ['2026-11-27T08:00:00Z', Date.parse('2026-11-27T08:00:00Z')],
    ['2026-11-27T08:00:00.123Z', Date.parse('2026-11-27T08:00:00.123Z')],
    ['2026-11-27T08:00Z', Date.parse('2026-11-27T08:00:00Z')],
    ['2026-11-27T09:00:00+01:00', Date.parse('2026-11-27T08:00:00Z')],
    ['2026-11-27', Date.parse('2026-11-27T00:00:00Z')],
    ['2026-11-27T08:00:00', undefined],
    ['2h30m', undefined],
    ['-2h', undefined],
    ['2 h', undefined],
    ['2H', undefined],
    ['1.5h', undefined],
    ['2w', undefined],
    ['yesterday', undefined],
    ['1700000000', undefined],
    ['2026-13-45', undefined],
    ['2026-02-30T00:00:00Z', Date.parse('2026-03-02T00:00:00Z')],
    ['', undefined]
  ]
  for (const [text, expected] of vectors) t.equal(parseTimeArgument(text, NOW), expected, JSON.stringify(text))
})

t.test('a range is since..until, until defaulting to now and capped at now', async (t) => {
  t.same(resolveRange({ since: '2h' }, NOW, API_WINDOW_MS), { sinceMs: NOW - 7_200_000, untilMs: NOW })
  t.same(resolveRange({ since: '3h', until: '1h' }, NOW, API_WINDOW_MS), { sinceMs: NOW - 10_800_000, untilMs: NOW - 3_600_000 })
  t.same(resolveRange({ since: '1h', until: '2026-11-28T00:00:00Z' }, NOW, API_WINDOW_MS), { sinceMs: NOW - 3_600_000, untilMs: NOW })
  t.same(resolveRange({ since: '30d' }, NOW, API_WINDOW_MS), { sinceMs: NOW - 30 * DAY, untilMs: NOW }, 'exactly the window is allowed')
})

t.test('every bad range is refused with a reason that does not repeat the input', async (t) => {
  const cases: [{ since?: string; until?: string }, RegExp][] = [
    [{}, /^since is required$/],
    [{ since: '  ' }, /^since is required$/],
    [{ since: 'last tuesday' }, /^since must be an ISO 8601 time with its zone .* or a duration back from now/],
    [{ since: '2h', until: 'soon' }, /^until must be an ISO 8601 time/],
    [{ since: '1h', until: '2h' }, /^since must be earlier than until and than now$/],
    [{ since: '1h', until: '1h' }, /^since must be earlier than until and than now$/],
    [{ since: '2026-11-28T00:00:00Z' }, /^since must be earlier than until and than now$/],
    [{ since: '0s' }, /^since must be earlier than until and than now$/],
    [{ since: '31d' }, /^since must be within the last 30d \(Persona's 30-day window/]
  ]
  for (const [input, problem] of cases) {
    const result = resolveRange(input, NOW, API_WINDOW_MS)
    t.match(result, { problem }, JSON.stringify(input))
    const blamed = 'problem' in result && result.problem.startsWith('until') ? input.until : input.since
    if ('problem' in result && blamed?.trim()) t.notOk(result.problem.includes(blamed.trim()), 'the input is not echoed')
  }
})

t.test('the furthest back is the shorter of 30 days and the de-duplication window', async (t) => {
  t.equal(maxBackfillAgeMs(604800), 7 * DAY)
  t.equal(maxBackfillAgeMs(90 * 86400), API_WINDOW_MS)
  t.match(resolveRange({ since: '8d' }, NOW, maxBackfillAgeMs(604800)), { problem: /within the last 7d/ })
  t.match(resolveRange({ since: '3h' }, NOW, maxBackfillAgeMs(7200)), { problem: /within the last 2h/ })
  t.match(resolveRange({ since: '3h' }, NOW, maxBackfillAgeMs(5400)), { problem: /within the last 5400s/ })
  t.same(resolveRange({ since: '7d' }, NOW, maxBackfillAgeMs(604800)), { sinceMs: NOW - 7 * DAY, untilMs: NOW })
})
