import t from 'tap'
import { classifyError } from '../../src/delivery/sender.js'
import { personaEvent, startRelay, uniqueEventId } from '../helpers/app.js'
import { history, postEvent, waitForJob } from '../helpers/delivery.js'

t.test('a subscriber host that does not resolve is a dns failure, retried and recorded as such', async (t) => {
  // .invalid never resolves (RFC 6761), so this needs no network.
  const { app } = await startRelay(t, {
    SUBSCRIBER_GHOST_URL: 'http://does-not-exist.invalid/hook',
    SUBSCRIBER_GHOST_EVENTS: '*',
    SUBSCRIBER_GHOST_MAX_ATTEMPTS: '2'
  })
  const id = uniqueEventId()
  await postEvent(app, personaEvent(id))
  const job = await waitForJob(app, 'GHOST', id, 'failed')
  t.equal(job.attemptsMade, 2, 'retried up to the last attempt')
  t.equal(job.failedReason, 'delivery failed: dns')
  const attempts = await history(app, 'GHOST', id)
  t.same(attempts.map((attempt) => [attempt.attempt, attempt.outcome, attempt.errorClass]), [
    [1, 'network_error', 'dns'],
    [2, 'network_error', 'dns']
  ])
})

t.test('errors are classed by their code, also when wrapped as a cause', async (t) => {
  const cases: [unknown, string][] = [
    [Object.assign(new Error('x'), { code: 'EAI_AGAIN' }), 'dns'],
    [Object.assign(new Error('x'), { code: 'CERT_HAS_EXPIRED' }), 'tls'],
    [Object.assign(new Error('x'), { code: 'ERR_TLS_CERT_ALTNAME_INVALID' }), 'tls'],
    [Object.assign(new Error('x'), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' }), 'tls'],
    [new Error('fetch failed', { cause: Object.assign(new Error('y'), { code: 'ECONNREFUSED' }) }), 'connection_refused'],
    [Object.assign(new Error('x'), { name: 'TimeoutError' }), 'timeout'],
    ['a thrown string', 'network'],
    [null, 'network']
  ]
  for (const [error, expected] of cases) t.equal(classifyError(error), expected, String(expected))
})
