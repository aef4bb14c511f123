import { connect } from 'node:net'
import t, { type Test } from 'tap'
import { Queue } from 'bullmq'
import { Redis } from 'ioredis'
import { getDelivery } from '../src/delivery/deliveries.js'
import { queueName } from '../src/delivery/queue.js'
import type { DeliveryData } from '../src/delivery/types.js'
import { Completions } from '../src/store/completions.js'
import { personaEvent, signedHeaders, uniqueEventId } from './helpers/app.js'
import { startRedis, type TestRedis, singleNode } from './helpers/redis.js'
import { spawnRelayWith, startRelayProcess, type RelayProcess } from './helpers/relay-process.js'
import { startSubscriber } from './helpers/subscriber.js'
import { waitUntil } from './helpers/wait-until.js'

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
  const relay = spawnRelayWith(t, 'relay', {
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
  const relay = await startRelayProcess(t, 'relay', redis, { SUBSCRIBER_SLOW_URL: subscriber.url, SUBSCRIBER_SLOW_EVENTS: '*' })
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
  const queue = new Queue<DeliveryData>(queueName('SLOW'), { connection, prefix: 'persona-relay' })
  t.teardown(async () => {
    await queue.close()
    connection.disconnect()
  })
  // As the admin API shows it: the delivery in flight was fan-out's first attempt, now in the completion store.
  const view = await getDelivery(connection, queue, new Completions(connection, singleNode('persona-relay'), 86_400), 'SLOW', id)
  t.match(view, { state: 'completed', attemptsMade: 1 }, 'the delivery was completed before the process exited')
  t.equal(await connection.xlen('persona-relay:intake'), 0, 'its intake entry was acknowledged: nothing is left to take over')
  t.equal(relay.stderr(), '')
})

t.test('SIGINT also shuts down cleanly with exit code 0', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const redis = await redisFor(t)
  const relay = await startRelayProcess(t, 'relay', redis, { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' })
  relay.child.kill('SIGINT')
  const { code } = await relay.exited
  t.equal(code, 0)
  t.match(relay.logs().find((line) => line.msg === 'shutting down'), { signal: 'SIGINT' })
})

t.test('an intake request in flight when SIGTERM arrives still gets its 200', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const redis = await redisFor(t)
  const relay = await startRelayProcess(t, 'relay', redis, { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' })
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
