import t from 'tap'
import { KEPT_ATTEMPTS, attemptRecord, parseAttemptLog } from '../../src/delivery/attempts.js'
import type { AttemptRecord } from '../../src/delivery/types.js'

const STARTED = new Date('2026-11-27T10:00:00.250Z')

t.test('a history keeps at most 200 attempts', async (t) => {
  t.equal(KEPT_ATTEMPTS, 200)
})

t.test('an answered attempt records its number, start, duration, outcome, status and response', async (t) => {
  const record = attemptRecord({ outcome: 'http_error', status: 500, durationMs: 42.5, responseExcerpt: 'boom' }, 3, STARTED)
  t.same(record, { attempt: 3, at: '2026-11-27T10:00:00.250Z', durationMs: 42.5, outcome: 'http_error', status: 500, response: 'boom' })
})

t.test('a failed connection records its error class and no status or response', async (t) => {
  const record = attemptRecord({ outcome: 'network_error', errorClass: 'connection_refused', durationMs: 1.2 }, 1, STARTED)
  t.same(record, { attempt: 1, at: '2026-11-27T10:00:00.250Z', durationMs: 1.2, outcome: 'network_error', errorClass: 'connection_refused' })
})

t.test('a timeout records its error class', async (t) => {
  const record = attemptRecord({ outcome: 'timeout', errorClass: 'timeout', durationMs: 300.4 }, 2, STARTED)
  t.same(record, { attempt: 2, at: '2026-11-27T10:00:00.250Z', durationMs: 300.4, outcome: 'timeout', errorClass: 'timeout' })
})

t.test('an empty answer leaves out the response, and a Retry-After header is not part of the record', async (t) => {
  const record = attemptRecord({ outcome: 'success', status: 204, durationMs: 5, responseExcerpt: '' }, 1, STARTED)
  t.same(record, { attempt: 1, at: '2026-11-27T10:00:00.250Z', durationMs: 5, outcome: 'success', status: 204 })
  const limited = attemptRecord({ outcome: 'http_error', status: 429, durationMs: 5, retryAfter: '10' }, 1, STARTED)
  t.notOk('retryAfter' in limited)
})

t.test('only probe attempts are marked as probes', async (t) => {
  const result = { outcome: 'success' as const, status: 200, durationMs: 5 }
  t.equal(attemptRecord(result, 4, STARTED, true).probe, true)
  t.notOk('probe' in attemptRecord(result, 4, STARTED, false))
  t.notOk('probe' in attemptRecord(result, 4, STARTED))
})

t.test('a record survives the trip through a job log row', async (t) => {
  const records: AttemptRecord[] = [
    attemptRecord({ outcome: 'http_error', status: 503, durationMs: 3, responseExcerpt: 'busy "now"\n' }, 1, STARTED),
    attemptRecord({ outcome: 'success', status: 200, durationMs: 4 }, 2, STARTED, true)
  ]
  t.same(parseAttemptLog(records.map((record) => JSON.stringify(record))), records)
})

t.test('unreadable rows are skipped and the rest kept in order', async (t) => {
  const first = attemptRecord({ outcome: 'timeout', errorClass: 'timeout', durationMs: 300 }, 1, STARTED)
  const second = attemptRecord({ outcome: 'success', status: 200, durationMs: 8 }, 2, STARTED)
  const rows = ['not json', JSON.stringify(first), '{"attempt": 2,', '', JSON.stringify(second), '}']
  t.same(parseAttemptLog(rows), [first, second])
  t.same(parseAttemptLog([]), [])
})

t.test('rows that are JSON but not attempt records are skipped too', async (t) => {
  const record = attemptRecord({ outcome: 'success', status: 200, durationMs: 8 }, 1, STARTED)
  const rows = ['null', '42', '"delivered"', '[]', '{"attempt":"1"}', '{}', JSON.stringify(record)]
  t.same(parseAttemptLog(rows), [record])
})
