import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import type { Server } from 'node:http'
import { connect } from 'node:net'
import { once } from 'node:events'
import t, { type Test } from 'tap'
import { Webhook } from 'standardwebhooks'
import { demoSubscriber, verifyStandardWebhook } from '../../src/cli/demo-subscriber.js'
import { main } from '../../src/cli/main.js'
import type { Output } from '../../src/cli/args.js'
import { standardWebhookSignature } from '../../src/delivery/outbound-signature.js'
import { personaEvent, signedHeaders, startRelay, uniqueEventId, type TestRelay } from '../helpers/app.js'
import { closeServer, deliveryAttempts } from '../helpers/delivery.js'
import { freePort } from '../helpers/redis.js'
import { LOADER_ARGS, ROOT } from '../helpers/relay-process.js'
import { waitUntil } from '../helpers/wait-until.js'

function whsec(): string {
  return `whsec_${randomBytes(24).toString('base64')}`
}

interface Demo {
  server: Server
  port: number
  lines: string[]
  /** The JSON lines the demo logged, one per request. */
  requests(): Record<string, unknown>[]
}

async function startDemo(t: Test, argv: string[], env: NodeJS.ProcessEnv = {}): Promise<Demo> {
  const lines: string[] = []
  const output: Output = { out: (line) => lines.push(line), err: (line) => lines.push(`stderr: ${line}`) }
  let port = await freePort()
  let server: Server
  for (let attempt = 1; ; attempt += 1) {
    try {
      server = await demoSubscriber(['--port', String(port), '--host', '127.0.0.1', ...argv], env, output)
      break
    } catch (error) {
      // Another test file's server may take the free port first.
      if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt === 3) throw error
      port = await freePort()
    }
  }
  t.teardown(() => closeServer(server))
  return {
    server,
    port,
    lines,
    requests: () => lines.filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as Record<string, unknown>)
  }
}

/** A relay that delivers every event to the demo, signing with `secret`, and gives up after one attempt. */
async function relayTo(t: Test, demo: Demo, secret?: string): Promise<TestRelay> {
  return startRelay(t, {
    SUBSCRIBER_DEMO_URL: `http://127.0.0.1:${demo.port}/persona`,
    SUBSCRIBER_DEMO_EVENTS: '*',
    SUBSCRIBER_DEMO_MAX_ATTEMPTS: '1',
    ...(secret ? { SUBSCRIBER_DEMO_SECRET: secret } : {})
  })
}

async function post(relay: TestRelay, id: string, name = 'inquiry.approved') {
  const body = personaEvent(id, name)
  const response = await relay.app.inject({ method: 'POST', url: '/webhooks/persona', headers: signedHeaders(body), payload: body })
  if (response.statusCode !== 200) throw new Error(`intake answered ${response.statusCode}`)
  return body
}

t.test('with the secret the relay signs with, the demo logs the event as valid and answers 204', async (t) => {
  const secret = whsec()
  const demo = await startDemo(t, ['--secret', secret])
  t.same(demo.lines, ['demo subscriber listening on 127.0.0.1:' + demo.port])
  const relay = await relayTo(t, demo, secret)
  const id = uniqueEventId()
  const body = await post(relay, id, 'report/watchlist.matched')

  const [logged] = await waitUntil('the demo to log the event', () => demo.requests().length > 0 && demo.requests())
  t.same(logged, { eventId: id, eventName: 'report/watchlist.matched', attempt: '1', signature: 'valid', bytes: Buffer.byteLength(body) })
  const [attempt] = await waitUntil('the relay to log the attempt', () => deliveryAttempts(relay.logs, 'DEMO', id).length > 0 && deliveryAttempts(relay.logs, 'DEMO', id))
  t.match(attempt, { outcome: 'success', status: 204 })
})

t.test('with a different secret the demo logs INVALID and answers 401', async (t) => {
  const demo = await startDemo(t, ['--secret', whsec()])
  const relay = await relayTo(t, demo, whsec())
  const id = uniqueEventId()
  await post(relay, id)

  const [logged] = await waitUntil('the demo to log the event', () => demo.requests().length > 0 && demo.requests())
  t.match(logged, { eventId: id, signature: 'INVALID' })
  const [attempt] = await waitUntil('the relay to log the attempt', () => deliveryAttempts(relay.logs, 'DEMO', id).length > 0 && deliveryAttempts(relay.logs, 'DEMO', id))
  t.match(attempt, { outcome: 'http_error', status: 401 })
})

t.test('one of several comma-separated secrets is enough, and DEMO_SUBSCRIBER_SECRET is read when --secret is absent', async (t) => {
  const secret = whsec()
  const demo = await startDemo(t, [], { DEMO_SUBSCRIBER_SECRET: `${whsec()}, ${secret}` })
  const relay = await relayTo(t, demo, secret)
  const id = uniqueEventId()
  await post(relay, id)
  const [logged] = await waitUntil('the demo to log the event', () => demo.requests().length > 0 && demo.requests())
  t.match(logged, { eventId: id, signature: 'valid' })
})

t.test('without any secret the demo does not check signatures and answers 204', async (t) => {
  const demo = await startDemo(t, [])
  const relay = await relayTo(t, demo)
  const id = uniqueEventId()
  await post(relay, id)
  const [logged] = await waitUntil('the demo to log the event', () => demo.requests().length > 0 && demo.requests())
  t.match(logged, { eventId: id, signature: 'not checked (no secret)' })
  const [attempt] = await waitUntil('the relay to log the attempt', () => deliveryAttempts(relay.logs, 'DEMO', id).length > 0 && deliveryAttempts(relay.logs, 'DEMO', id))
  t.match(attempt, { outcome: 'success', status: 204 })
})

t.test('regression: a sender that drops the connection mid-body does not crash the demo', async (t) => {
  const demo = await startDemo(t, ['--secret', whsec()])
  const socket = connect(demo.port, '127.0.0.1')
  await once(socket, 'connect')
  socket.write('POST /persona HTTP/1.1\r\nHost: demo\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"data":')
  await waitUntil('the demo to have the request', async () => (await new Promise<number>((resolve) => demo.server.getConnections((_error, count) => resolve(count)))) > 0)
  socket.destroy()
  // Before the fix the aborted body rejected inside the request handler: an unhandled rejection that ends the process.
  await waitUntil('the connection to be gone', async () => (await new Promise<number>((resolve) => demo.server.getConnections((_error, count) => resolve(count)))) === 0)
  const response = await fetch(`http://127.0.0.1:${demo.port}/persona`, { method: 'POST', body: '{}' })
  t.equal(response.status, 401, 'still answering')
  t.equal(demo.requests().length, 1, 'only the complete request was logged')
})

t.test('persona-relay demo-subscriber runs as a process until SIGTERM, then exits 0 at once', async (t) => {
  const secret = whsec()
  const port = await freePort()
  const child = spawn(process.execPath, [...LOADER_ARGS, 'src/cli/index.ts', 'demo-subscriber', '--port', String(port), '--host', '127.0.0.1'], {
    cwd: ROOT,
    // Without coverage: a process ended by a signal leaves a partial report that would hide this file's real coverage.
    env: { ...Object.fromEntries(Object.entries(process.env).filter(([key]) => key !== 'NODE_V8_COVERAGE')), DEMO_SUBSCRIBER_SECRET: secret },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const exited = once(child, 'exit')
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  await waitUntil('the demo to listen', () => {
    if (child.exitCode !== null) throw new Error(`the demo exited early: ${stderr}`)
    return stdout.includes(`demo subscriber listening on 127.0.0.1:${port}`)
  }, 30_000)

  const relay = await relayTo(t, { port } as Demo, secret)
  const id = uniqueEventId()
  await post(relay, id)
  const logged = await waitUntil('the demo to log the event', () => /^\{.*\}$/m.exec(stdout)?.[0])
  t.match(JSON.parse(logged), { eventId: id, signature: 'valid' })
  t.equal(child.exitCode, null, 'still running: the command does not end by itself')
  const stoppedAt = Date.now()
  child.kill('SIGTERM')
  t.same(await exited, [0, null], 'a clean exit, not death by the signal (as PID 1 in a container, that would be a kill after the grace period)')
  t.ok(Date.now() - stoppedAt < 2000, `stopped in ${Date.now() - stoppedAt} ms`)
})

t.test('the demo-subscriber command refuses a bad port as a usage mistake', async (t) => {
  const lines: string[] = []
  const code = await main(['demo-subscriber', '--port', '0'], {}, { out: (line) => lines.push(line), err: (line) => lines.push(line) })
  t.equal(code, 2)
  t.match(lines.join('\n'), '--port must be a positive integer')
})

t.test('verifyStandardWebhook', async (t) => {
  const secret = whsec()
  const body = Buffer.from(personaEvent('evt_unit'))
  const now = 1_767_225_600
  const headersAt = (timestamp: number, signedBody: Buffer = body, secrets = [secret], id = 'evt_unit') => ({
    'webhook-id': id,
    'webhook-timestamp': String(timestamp),
    'webhook-signature': standardWebhookSignature(secrets, id, timestamp, signedBody)
  })

  t.test('accepts our signature, and one made by the reference Standard Webhooks library', async (t) => {
    t.ok(verifyStandardWebhook(headersAt(now), body, [secret], now))
    const reference = new Webhook(secret).sign('evt_unit', new Date(now * 1000), body.toString())
    t.ok(verifyStandardWebhook({ 'webhook-id': 'evt_unit', 'webhook-timestamp': String(now), 'webhook-signature': reference }, body, [secret], now))
    t.doesNotThrow(() => new Webhook(secret).verify(body.toString(), headersAt(Math.floor(Date.now() / 1000))), 'and the reference accepts ours')
  })

  t.test('a rotation header verifies under either secret, and either header order', async (t) => {
    const old = whsec()
    t.ok(verifyStandardWebhook(headersAt(now, body, [secret, old]), body, [old], now))
    t.ok(verifyStandardWebhook(headersAt(now, body, [old, secret]), body, [secret], now))
    t.notOk(verifyStandardWebhook(headersAt(now, body, [old]), body, [secret], now))
  })

  t.test('refuses a tampered body', async (t) => {
    const headers = headersAt(now)
    t.notOk(verifyStandardWebhook(headers, Buffer.concat([body, Buffer.from(' ')]), [secret], now))
    t.notOk(verifyStandardWebhook(headers, Buffer.from(body.toString().replace('evt_unit', 'evt_unix')), [secret], now))
    t.notOk(verifyStandardWebhook({ ...headers, 'webhook-id': 'evt_other' }, body, [secret], now), 'nor another id')
    t.notOk(verifyStandardWebhook({ ...headers, 'webhook-timestamp': String(now + 1) }, body, [secret], now), 'nor another timestamp')
  })

  t.test('refuses a timestamp more than five minutes away, either way', async (t) => {
    t.ok(verifyStandardWebhook(headersAt(now - 300), body, [secret], now), '300 s old is still fine')
    t.notOk(verifyStandardWebhook(headersAt(now - 301), body, [secret], now))
    t.ok(verifyStandardWebhook(headersAt(now + 300), body, [secret], now))
    t.notOk(verifyStandardWebhook(headersAt(now + 301), body, [secret], now))
    t.notOk(verifyStandardWebhook(headersAt(now - 86_400), body, [secret], now))
  })

  t.test('refuses missing or malformed headers', async (t) => {
    const headers = headersAt(now)
    const without = (key: keyof typeof headers) => Object.fromEntries(Object.entries(headers).filter(([name]) => name !== key))
    t.notOk(verifyStandardWebhook(without('webhook-id'), body, [secret], now), 'no id')
    t.notOk(verifyStandardWebhook(without('webhook-timestamp'), body, [secret], now), 'no timestamp')
    t.notOk(verifyStandardWebhook(without('webhook-signature'), body, [secret], now), 'no signature')
    t.notOk(verifyStandardWebhook({ ...headers, 'webhook-timestamp': `${now}.5` }, body, [secret], now), 'a fractional timestamp')
    t.notOk(verifyStandardWebhook({ ...headers, 'webhook-timestamp': 'now' }, body, [secret], now), 'a word for a timestamp')
    t.notOk(verifyStandardWebhook({ ...headers, 'webhook-id': ['evt_unit', 'evt_unit'] }, body, [secret], now), 'a repeated id header')
    t.notOk(verifyStandardWebhook({ ...headers, 'webhook-signature': headers['webhook-signature'].replace('v1,', 'v2,') }, body, [secret], now), 'another version')
    t.notOk(verifyStandardWebhook({ ...headers, 'webhook-signature': `${headers['webhook-signature']}x` }, body, [secret], now), 'a longer signature')
    t.notOk(verifyStandardWebhook(headers, body, [], now), 'no secret at all')
  })
})
