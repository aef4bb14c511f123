import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { connect } from 'node:net'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { Queue } from 'bullmq'
import { Redis } from 'ioredis'
import { queueName } from '../src/delivery/job.js'
import { personaEvent, SECRET, signedHeaders, uniqueEventId } from './helpers/app.js'
import { freePort, startRedis, type TestRedis } from './helpers/redis.js'
import { startSubscriber } from './helpers/subscriber.js'
import { waitUntil } from './helpers/wait-until.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
// Node 20 cannot run TypeScript by itself: the child loads the same TypeScript loader tap gave this process.
const LOADER = process.execArgv.filter((arg) => arg.includes('@tapjs/typescript') || arg === '--enable-source-maps')
const LOADER_ARGS = LOADER.length > 0 ? LOADER : ['--import=@tapjs/typescript/import']
const RELAY_SETTING = /^(PORT|HOST|LOG_LEVEL|REDIS_|PERSONA_|SUBSCRIBER_|DELIVERY_|DEDUPE_|BODY_LIMIT_|DEAD_LETTER_|SHUTDOWN_)/

interface RelayProcess {
  child: ChildProcess
  baseUrl: string
  stdout(): string
  stderr(): string
  logs(): Record<string, unknown>[]
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

/** `src/server.ts` in a process of its own, with nothing of this process's relay settings leaking in. */
function spawnRelay(t: Test, env: Record<string, string>, port = 0): RelayProcess {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([key]) => !RELAY_SETTING.test(key)))
  const child = spawn(process.execPath, [...LOADER_ARGS, 'src/server.ts'], {
    cwd: ROOT,
    env: { ...inherited, ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  child.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  const exited = once(child, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }))
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  return {
    child,
    baseUrl: `http://127.0.0.1:${port}`,
    stdout: () => stdout,
    stderr: () => stderr,
    logs: () => stdout.split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as Record<string, unknown>),
    exited
  }
}

async function startServer(t: Test, redis: TestRedis, env: Record<string, string>): Promise<RelayProcess> {
  const port = await freePort()
  const relay = spawnRelay(t, {
    PORT: String(port),
    HOST: '127.0.0.1',
    REDIS_URL: redis.url,
    PERSONA_WEBHOOK_SECRET: SECRET,
    LOG_LEVEL: 'info',
    DELIVERY_RETRY_SCHEDULE: '0.05',
    // Well above a clean shutdown (about a second), so that a hung one fails the test sooner.
    SHUTDOWN_TIMEOUT_MS: '8000',
    ...env
  }, port)
  await waitUntil('the relay process to be ready', async () => {
    if (relay.child.exitCode !== null) throw new Error(`relay exited early: ${relay.stderr()}`)
    const response = await fetch(`${relay.baseUrl}/readyz`).catch(() => undefined)
    return response?.status === 200
  }, 30_000, 50)
  return relay
}

function postEvent(relay: RelayProcess, body: string): Promise<Response> {
  return fetch(`${relay.baseUrl}/webhooks/persona`, { method: 'POST', headers: signedHeaders(body), body })
}

function refusesConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(false)
    })
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNREFUSED'))
  })
}

async function redisFor(t: Test): Promise<TestRedis> {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  return redis
}

t.test('a bad configuration exits non-zero with one message naming every bad key', async (t) => {
  const relay = spawnRelay(t, {
    PORT: 'eighty',
    REDIS_URL: 'http://user:hunter2@cache:6379',
    SUBSCRIBER_CRM_URL: 'crm.internal/hook',
    SUBSCRIBER_CRM_TIMEOUT_MS: '0',
    SUBSCRIBER_BILLING_URL: 'http://billing.internal/hook',
    LOG_LEVEL: 'loud'
  })
  const { code } = await relay.exited
  t.not(code, 0)
  t.equal(code, 1)
  const stderr = relay.stderr()
  t.equal(stderr.match(/invalid configuration/g)?.length, 1, 'one message')
  for (const key of ['PORT', 'REDIS_URL', 'LOG_LEVEL', 'PERSONA_WEBHOOK_SECRET', 'SUBSCRIBER_CRM_URL', 'SUBSCRIBER_CRM_EVENTS',
    'SUBSCRIBER_CRM_TIMEOUT_MS', 'SUBSCRIBER_BILLING_EVENTS']) {
    t.match(stderr, new RegExp(`- ${key}: `), `names ${key}`)
  }
  t.notMatch(stderr, 'hunter2', 'never echoes a credential')
  t.notMatch(stderr, /\n\s+at /, 'no stack trace')
  t.equal(relay.stdout(), '', 'never started')
})

t.test('SIGTERM stops accepting, lets the delivery in flight finish and exits 0', async (t) => {
  const subscriber = await startSubscriber(() => ({ status: 200, delayMs: 1500 }))
  t.teardown(() => subscriber.close())
  const redis = await redisFor(t)
  const relay = await startServer(t, redis, { SUBSCRIBER_SLOW_URL: subscriber.url, SUBSCRIBER_SLOW_EVENTS: '*' })
  const id = uniqueEventId()
  t.equal((await postEvent(relay, personaEvent(id))).status, 200)
  const [delivery] = await subscriber.waitFor(1)
  const subscriberAnswersAt = delivery!.at + 1500

  relay.child.kill('SIGTERM')
  await waitUntil('the relay to refuse new connections', () => refusesConnections(Number(new URL(relay.baseUrl).port)))
  t.ok(Date.now() < subscriberAnswersAt, 'stopped accepting while the delivery was still in flight')
  t.equal(relay.child.exitCode, null, 'still running while the delivery is in flight')

  const { code, signal } = await relay.exited
  t.equal(code, 0)
  t.equal(signal, null)
  t.ok(Date.now() >= subscriberAnswersAt, 'waited for the subscriber to answer')
  t.equal(subscriber.received.length, 1)
  const logs = relay.logs()
  t.match(logs.find((line) => line.msg === 'shutting down'), { signal: 'SIGTERM' })
  t.match(logs.find((line) => line.msg === 'delivery attempt'), { eventId: id, outcome: 'success', status: 200 })

  const connection = new Redis(redis.url, { maxRetriesPerRequest: null })
  const queue = new Queue(queueName('SLOW'), { connection, prefix: 'persona-relay' })
  t.teardown(async () => {
    await queue.close()
    connection.disconnect()
  })
  t.equal(await queue.getJobState(id), 'completed', 'the job was completed before the process exited')
  t.equal(relay.stderr(), '')
})

t.test('SIGINT also shuts down cleanly with exit code 0', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const redis = await redisFor(t)
  const relay = await startServer(t, redis, { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' })
  relay.child.kill('SIGINT')
  const { code } = await relay.exited
  t.equal(code, 0)
  t.match(relay.logs().find((line) => line.msg === 'shutting down'), { signal: 'SIGINT' })
})

t.test('an intake request in flight when SIGTERM arrives still gets its 200', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const redis = await redisFor(t)
  const relay = await startServer(t, redis, { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' })
  const control = new Redis(redis.url)
  t.teardown(() => control.disconnect())

  // Paused writes hold the request inside the relay, where Redis itself can show it waiting.
  await control.client('PAUSE', 5000, 'WRITE')
  const id = uniqueEventId()
  const answer = postEvent(relay, personaEvent(id))
  await waitUntil('the intake request to wait on Redis', async () => {
    const clients = (await control.client('LIST')) as string
    return clients.split('\n').some((line) => line.includes('name=persona-relay:intake') && / flags=\S*b/.test(line))
  })
  relay.child.kill('SIGTERM')
  await waitUntil('the relay to begin shutting down', () => relay.logs().some((line) => line.msg === 'shutting down'))
  await control.client('UNPAUSE')

  const response = await answer
  t.equal(response.status, 200)
  t.same(await response.json(), { received: true, id })
  t.equal(response.headers.get('connection'), 'close', 'the connection is not kept for another request')
  t.equal((await relay.exited).code, 0)
  t.match(relay.logs().find((line) => line.msg === 'intake'), { eventId: id, outcome: 'accepted', statusCode: 200 })
})
