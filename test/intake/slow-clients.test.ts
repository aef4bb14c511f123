import { readFileSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { personaEvent, signedHeaders, uniqueEventId } from '../helpers/app.js'
import { startRedis } from '../helpers/redis.js'
import { startRelayProcess, type RelayProcess } from '../helpers/relay-process.js'
import { waitUntil } from '../helpers/wait-until.js'

const REQUEST_TIMEOUT_MS = 4000
const SLOW_CLIENTS = 200
const DECLARED_LENGTH = 1_048_000
const SENT_AT_ONCE = 1_000_000

function rssMb(relay: RelayProcess): number {
  const status = readFileSync(`/proc/${relay.child.pid}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) / 1024
}

interface SlowClient {
  socket: Socket
  /** When it connected and sent its headers: where the relay's request deadline starts. */
  connectedAt: Promise<number>
  closedAt: Promise<number>
  answer: () => string
}

/** Declares a near-limit body, sends most of it, then one byte a second (faster than any idle timeout). */
function slowClient(port: number): SlowClient {
  const socket = connect(port, '127.0.0.1')
  let answer = ''
  let trickle: NodeJS.Timeout | undefined
  socket.on('data', (chunk: Buffer) => { answer += chunk.toString() })
  socket.on('error', () => {})
  let connected!: (at: number) => void
  const connectedAt = new Promise<number>((resolve) => (connected = resolve))
  socket.once('connect', () => {
    connected(Date.now())
    socket.write(`POST /webhooks/persona HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nContent-Length: ${DECLARED_LENGTH}\r\n\r\n`)
    socket.write(Buffer.alloc(SENT_AT_ONCE, 0x20))
    trickle = setInterval(() => socket.write(' '), 1000)
  })
  const closedAt = new Promise<number>((resolve) => socket.once('close', () => {
    clearInterval(trickle)
    resolve(Date.now())
  }))
  return { socket, connectedAt, closedAt, answer: () => answer }
}

function openConnection(port: number): Promise<{ socket: Socket; closed: Promise<void>; openedAt: number }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    const closed = new Promise<void>((done) => socket.once('close', () => done()))
    // A paused socket never sees the server's end: its answer would wait unread in the buffer.
    socket.on('data', () => {})
    socket.once('error', reject)
    socket.once('connect', () => resolve({ socket, closed, openedAt: Date.now() }))
  })
}

/**
 * Opens the slow clients and waits until each is closed, or its deadline plus 2 s has passed. Each
 * deadline counts from that client's connection, as the relay's does: on a loaded machine 200
 * connections are not all made in the same instant.
 */
async function attack(t: Test, port: number) {
  const clients = Array.from({ length: SLOW_CLIENTS }, () => slowClient(port))
  t.teardown(() => clients.forEach((client) => client.socket.destroy()))
  const closed = async () => {
    const lived = await Promise.all(clients.map(async (client) => {
      const connectedAt = await client.connectedAt
      const deadline = sleep(REQUEST_TIMEOUT_MS + 2000 - (Date.now() - connectedAt)).then(() => Infinity)
      return (await Promise.race([client.closedAt, deadline])) - connectedAt
    }))
    return { open: lived.filter((ms) => ms === Infinity).length, lastMs: Math.max(...lived) }
  }
  return { clients, closed }
}

/** Buffers let go of are collected once the relay allocates again, as ordinary traffic makes it: here unsigned 256 KB requests, refused with 401. */
async function rssAfterTraffic(relay: RelayProcess, target: number): Promise<number> {
  const noise = JSON.stringify({ padding: 'x'.repeat(256 * 1024) })
  let rss = rssMb(relay)
  for (const deadline = Date.now() + 30_000; rss > target && Date.now() < deadline;) {
    await fetch(`${relay.baseUrl}/webhooks/persona`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: noise })
    rss = rssMb(relay)
  }
  return rss
}

t.test('slow clients are answered 408 and closed at the request deadline, and release their memory', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const relay = await startRelayProcess(t, 'relay', redis, { REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS) })
  const port = Number(new URL(relay.baseUrl).port)
  // A first attack brings the allocator to its working size: what it frees it keeps for reuse, so
  // "where it started" is RSS after one attack, and a second must not grow it.
  const fresh = rssMb(relay)
  t.equal((await (await attack(t, port)).closed()).open, 0, 'the first attack is closed too')
  const before = await rssAfterTraffic(relay, fresh + 30)

  const { clients, closed } = await attack(t, port)
  const silent = await openConnection(port)
  t.teardown(() => silent.socket.destroy())
  await sleep(1000)
  const during = rssMb(relay)

  const body = personaEvent(uniqueEventId())
  const sentAt = performance.now()
  const signed = await fetch(`${relay.baseUrl}/webhooks/persona`, { method: 'POST', headers: signedHeaders(body), body })
  const signedMs = performance.now() - sentAt
  t.equal(signed.status, 200, 'a signed event sent during the attack is accepted')
  t.ok(signedMs < 1000, `and answered in ${signedMs.toFixed(0)} ms`)

  const { open, lastMs } = await closed()
  t.equal(open, 0, `every slow connection closed within REQUEST_TIMEOUT_MS + 2 s (the last after ${lastMs} ms)`)
  t.ok(clients.every((client) => client.answer().startsWith('HTTP/1.1 408')), 'each was answered 408')
  const silentClosed = await Promise.race([silent.closed.then(() => true), sleep(REQUEST_TIMEOUT_MS + 2000 - (Date.now() - silent.openedAt)).then(() => false)])
  t.ok(silentClosed, 'a connection that sends nothing at all is closed by the same deadline')

  const after = await rssAfterTraffic(relay, before + 30)
  t.ok(after - before <= 30, `RSS ${fresh.toFixed(0)} MB fresh, ${before.toFixed(0)} MB after a first attack, ${during.toFixed(0)} MB during the second, ${after.toFixed(0)} MB after it`)
})

t.test('past MAX_CONNECTIONS new connections are refused while open ones keep working', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const relay = await startRelayProcess(t, 'relay', redis, { MAX_CONNECTIONS: '4' })
  const port = Number(new URL(relay.baseUrl).port)
  const held = await Promise.all(Array.from({ length: 4 }, () => openConnection(port)))
  t.teardown(() => held.forEach(({ socket }) => socket.destroy()))

  const extra = await openConnection(port)
  const extraAnswer = await Promise.race([extra.closed.then(() => 'closed'), sleep(2000).then(() => 'open')])
  t.equal(extraAnswer, 'closed', 'the fifth connection is closed at once')

  const [first] = held
  const body = personaEvent(uniqueEventId())
  const headers = Object.entries({ ...signedHeaders(body), 'content-length': String(Buffer.byteLength(body)), host: 'relay' })
    .map(([name, value]) => `${name}: ${value}`).join('\r\n')
  let answer = ''
  first!.socket.on('data', (chunk: Buffer) => { answer += chunk.toString() })
  first!.socket.write(`POST /webhooks/persona HTTP/1.1\r\n${headers}\r\n\r\n${body}`)
  await waitUntil('an answer on an open connection', async () => answer.includes('\r\n\r\n'), 5000, 20)
  t.match(answer, /^HTTP\/1\.1 200 /, 'an already open connection still takes a signed event')
})
