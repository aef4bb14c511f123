import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { loadConfig } from '../../src/config/index.js'
import { connectRedis, REQUEST_PATH_OPTIONS } from '../../src/store/redis.js'
import { personaEvent, signedHeaders, startRelay, testEnv, uniqueEventId } from '../helpers/app.js'
import { startRedis } from '../helpers/redis.js'
import { startSubscriber } from '../helpers/subscriber.js'
import { waitUntil } from '../helpers/wait-until.js'

/** A CA of the test's own and a certificate it signed for 127.0.0.1: what Node does not trust by itself. */
function certificates(dir: string) {
  const file = (name: string) => join(dir, name)
  const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'ignore' })
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=persona-relay test CA', '-keyout', file('ca.key'), '-out', file('ca.pem'))
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', file('server.key'), '-out', file('server.csr'))
  writeFileSync(file('san.cnf'), 'subjectAltName=IP:127.0.0.1\n')
  openssl('x509', '-req', '-in', file('server.csr'), '-CA', file('ca.pem'), '-CAkey', file('ca.key'), '-CAcreateserial', '-days', '1', '-extfile', file('san.cnf'), '-out', file('server.pem'))
  return { ca: file('ca.pem'), cert: file('server.pem'), key: file('server.key') }
}

t.test('over TLS (rediss://) with REDIS_TLS_CA_FILE the relay records and delivers; without the CA it refuses to trust the server', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'persona-relay-tls-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const { ca, cert, key } = certificates(dir)
  const redis = await startRedis({ tls: { cert, key } })
  t.teardown(() => redis.stop())
  t.match(redis.url, /^rediss:\/\//)
  const subscriber = await startSubscriber(() => ({ status: 204 }))
  t.teardown(() => subscriber.close())
  const subscriberEnv = { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: 'inquiry.*' }

  const relay = await startRelay(t, { ...subscriberEnv, REDIS_TLS_CA_FILE: ca }, redis)
  const id = uniqueEventId()
  const body = personaEvent(id)
  t.equal((await relay.app.inject({ method: 'POST', url: '/webhooks/persona', headers: signedHeaders(body), payload: body })).statusCode, 200)
  await waitUntil('delivered', () => subscriber.received.length === 1, 15_000)
  t.equal(subscriber.received[0]!.headers['webhook-id'], id)

  // Without the CA: a connection as the relay makes it, which must refuse the server's certificate.
  const untrusting = connectRedis(loadConfig(testEnv(redis, subscriberEnv)).redis, { ...REQUEST_PATH_OPTIONS, retryStrategy: () => null }, 'tls-test')
  const refused = await new Promise<Error>((resolve) => untrusting.once('error', resolve))
  untrusting.disconnect()
  t.match(refused.message, /self[- ]signed certificate|unable to verify/, 'a server certificate from an unknown CA is not trusted')
})
