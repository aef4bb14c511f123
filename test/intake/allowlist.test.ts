import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import t, { type Test } from 'tap'
import { Redis } from 'ioredis'
import { request } from 'undici'
import { loadConfig } from '../../src/config/index.js'
import { personaEvent, SECRET, signedHeaders, startRelay, uniqueEventId, type TestRelay } from '../helpers/app.js'
import { startSubscriber, type TestSubscriber } from '../helpers/subscriber.js'
import { waitUntil } from '../helpers/wait-until.js'

const PATH = '/webhooks/persona'
const PERSONA_GERMANY = '35.246.155.45'
const FORBIDDEN = { statusCode: 403, code: 'FORBIDDEN_SOURCE', error: 'Forbidden', message: 'Webhooks are not accepted from this address' }

interface Relay extends TestRelay {
  port: number
  subscriber: TestSubscriber
  /** Event records and intake stream entries in Redis. */
  recorded(): Promise<{ events: number; streamEntries: number }>
}

async function listeningRelay(t: Test, env: Record<string, string>): Promise<Relay> {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const relay = await startRelay(t, { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*', ...env })
  await relay.app.listen({ port: 0, host: '127.0.0.1' })
  const client = new Redis(relay.redis.url)
  t.teardown(() => client.disconnect())
  const prefix = relay.config.redis.layout.prefix
  return {
    ...relay,
    port: (relay.app.server.address() as { port: number }).port,
    subscriber,
    async recorded() {
      return { events: (await client.keys(`${prefix}:event:*`)).length, streamEntries: await client.xlen(`${prefix}:intake`) }
    }
  }
}

async function post(relay: Relay, id: string, headers: Record<string, string> = {}) {
  const body = personaEvent(id)
  const response = await request(`http://127.0.0.1:${relay.port}${PATH}`, { method: 'POST', headers: { ...signedHeaders(body), ...headers }, body })
  return { statusCode: response.statusCode, body: (await response.body.json()) as Record<string, unknown> }
}

function intakeLines(relay: TestRelay) {
  return relay.logs.lines.filter((line) => line.msg === 'intake')
}

interface RawAnswer {
  statusCode: number
  headers: string
  body: string
}

/** Reads one HTTP response off a socket that may never have sent its request body. */
function readAnswer(socket: Socket, timeoutMs = 5000): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    let text = ''
    const timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms; got ${JSON.stringify(text)}`)), timeoutMs)
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1')
      const end = text.indexOf('\r\n\r\n')
      if (end < 0) return
      const headers = text.slice(0, end)
      const length = Number(/\r\ncontent-length: (\d+)/i.exec(headers)?.[1] ?? 0)
      if (text.length - end - 4 < length) return
      clearTimeout(timer)
      resolve({ statusCode: Number(headers.split(' ')[1]), headers, body: text.slice(end + 4, end + 4 + length) })
    })
    socket.on('error', reject)
  })
}

/** Opens a connection and sends only the request head, declaring `contentLength` body bytes. */
async function sendHead(t: Test, port: number, contentLength: number, extraHeaders = ''): Promise<Socket> {
  const socket = connect(port, '127.0.0.1')
  t.teardown(() => socket.destroy())
  await once(socket, 'connect')
  socket.write(`POST ${PATH} HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nContent-Length: ${contentLength}\r\n${extraHeaders}\r\n`)
  return socket
}

t.test('with 127.0.0.1 allowed, a request from 127.0.0.1 is accepted and delivered', async (t) => {
  const relay = await listeningRelay(t, { PERSONA_ALLOWED_IPS: '127.0.0.1' })
  const id = uniqueEventId()
  t.same(await post(relay, id), { statusCode: 200, body: { received: true, id } })
  const [delivery] = await relay.subscriber.waitFor(1)
  t.equal(delivery!.headers['webhook-id'], id)
  t.match(intakeLines(relay).at(-1), { eventId: id, outcome: 'accepted', statusCode: 200 })
})

t.test('an address outside the allowlist is refused with 403 FORBIDDEN_SOURCE, even with a valid signature', async (t) => {
  const relay = await listeningRelay(t, { PERSONA_ALLOWED_IPS: '10.0.0.0/8, ::1' })
  t.same(await post(relay, uniqueEventId()), { statusCode: 403, body: FORBIDDEN })
  t.same(await relay.recorded(), { events: 0, streamEntries: 0 }, 'nothing recorded')
  t.match(intakeLines(relay), [{ outcome: 'forbidden_ip', statusCode: 403 }])
})

t.test('with persona allowed, a local request gets 403 before its body is read, and nothing is recorded', async (t) => {
  const relay = await listeningRelay(t, { PERSONA_ALLOWED_IPS: 'persona' })

  // Under the body limit: the relay would wait for the body if it did not refuse first.
  const waiting = await sendHead(t, relay.port, 500_000)
  const refused = await readAnswer(waiting)
  t.equal(refused.statusCode, 403, 'answered without the body')
  t.same(JSON.parse(refused.body), FORBIDDEN)

  // Far over the limit: refused as a source before its size is even considered.
  const huge = await sendHead(t, relay.port, 10 * 1024 ** 3)
  const hugeAnswer = await readAnswer(huge)
  t.equal(hugeAnswer.statusCode, 403, 'FORBIDDEN_SOURCE, not BODY_TOO_LARGE')

  await waitUntil('both refusals to be logged', () => intakeLines(relay).length === 2)
  t.match(intakeLines(relay), [{ outcome: 'forbidden_ip', statusCode: 403 }, { outcome: 'forbidden_ip', statusCode: 403 }])
  t.same(await relay.recorded(), { events: 0, streamEntries: 0 }, 'nothing recorded')
  t.equal(relay.subscriber.received.length, 0)
})

t.test('an allowed source waits for the body as usual (the premise of the test above)', async (t) => {
  const relay = await listeningRelay(t, { PERSONA_ALLOWED_IPS: '127.0.0.1' })
  const id = uniqueEventId()
  const body = personaEvent(id)
  const signature = signedHeaders(body)['persona-signature']
  const socket = await sendHead(t, relay.port, Buffer.byteLength(body), `Persona-Signature: ${signature}\r\n`)
  const answer = readAnswer(socket)
  let answeredEarly = false
  void answer.then(() => { answeredEarly = true }, () => undefined)
  // A fixed pause, because what is checked is that nothing happens: no answer while the body is missing.
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.notOk(answeredEarly, 'no answer before the body')
  socket.write(body)
  const { statusCode, body: text } = await answer
  t.equal(statusCode, 200)
  t.same(JSON.parse(text), { received: true, id })
})

t.test('TRUST_PROXY decides whether X-Forwarded-For names the client', async (t) => {
  const forwarded = { 'x-forwarded-for': PERSONA_GERMANY }

  for (const trustProxy of ['true', '127.0.0.1', '127.0.0.0/8', 'loopback']) {
    t.test(`TRUST_PROXY=${trustProxy}: a Persona address forwarded by the local proxy is allowed`, async (t) => {
      const relay = await listeningRelay(t, { PERSONA_ALLOWED_IPS: 'persona', TRUST_PROXY: trustProxy })
      const id = uniqueEventId()
      t.same(await post(relay, id, forwarded), { statusCode: 200, body: { received: true, id } })
      t.same(await post(relay, uniqueEventId(), { 'x-forwarded-for': '35.246.155.46' }), { statusCode: 403, body: FORBIDDEN },
        'the forwarded address is really checked: its neighbour is refused')
      t.same(await post(relay, uniqueEventId()), { statusCode: 403, body: FORBIDDEN }, 'and the proxy itself is no Persona address')
      t.match(intakeLines(relay), [{ outcome: 'accepted' }, { outcome: 'forbidden_ip' }, { outcome: 'forbidden_ip' }])
    })
  }

  t.test('TRUST_PROXY=false: the header is ignored and the local client refused', async (t) => {
    const relay = await listeningRelay(t, { PERSONA_ALLOWED_IPS: 'persona', TRUST_PROXY: 'false' })
    t.same(await post(relay, uniqueEventId(), forwarded), { statusCode: 403, body: FORBIDDEN })
    t.same(await relay.recorded(), { events: 0, streamEntries: 0 })
    t.match(intakeLines(relay), [{ outcome: 'forbidden_ip', statusCode: 403 }])
  })

  t.test('without TRUST_PROXY the header is ignored too', async (t) => {
    const relay = await listeningRelay(t, { PERSONA_ALLOWED_IPS: 'persona' })
    t.same(await post(relay, uniqueEventId(), forwarded), { statusCode: 403, body: FORBIDDEN })
  })

  t.test('with the proxy named, an address put in front by the client is not believed', async (t) => {
    const relay = await listeningRelay(t, { PERSONA_ALLOWED_IPS: 'persona', TRUST_PROXY: '127.0.0.1' })
    // The proxy appends the address it saw (203.0.113.9), which is not a trusted proxy: that is the client.
    t.same(await post(relay, uniqueEventId(), { 'x-forwarded-for': `${PERSONA_GERMANY}, 203.0.113.9` }), { statusCode: 403, body: FORBIDDEN })
    const id = uniqueEventId()
    t.same(await post(relay, id, { 'x-forwarded-for': `203.0.113.9, ${PERSONA_GERMANY}` }), { statusCode: 200, body: { received: true, id } })
  })

  t.test('regression: a hop count is refused at startup, as Fastify 5 would silently ignore it', async (t) => {
    t.throws(() => loadConfig({ PERSONA_WEBHOOK_SECRET: SECRET, PERSONA_ALLOWED_IPS: 'persona', TRUST_PROXY: '1' }), {
      name: 'ConfigError',
      problems: [/^TRUST_PROXY: a hop count is not supported/]
    })
  })
})

t.test('without PERSONA_ALLOWED_IPS every source is accepted', async (t) => {
  const relay = await listeningRelay(t, {})
  const id = uniqueEventId()
  t.same(await post(relay, id, { 'x-forwarded-for': '203.0.113.9' }), { statusCode: 200, body: { received: true, id } })
})
