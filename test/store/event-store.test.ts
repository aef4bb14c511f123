import t, { type Test } from 'tap'
import { Redis } from 'ioredis'
import { Agent, request } from 'undici'
import { deliveryCounts } from '../../src/delivery/deliveries.js'
import { EventStore, type IncomingEvent, type RecordOutcome } from '../../src/store/event-store.js'
import { REQUEST_PATH_OPTIONS } from '../../src/store/redis.js'
import { personaEvent, signedHeaders, startRelay, uniqueEventId } from '../helpers/app.js'
import { startRedis, type TestRedis, singleNode } from '../helpers/redis.js'
import { startSubscriber } from '../helpers/subscriber.js'
import { waitUntil } from '../helpers/wait-until.js'

const DAY = 86_400

async function connect(t: Test, redis: TestRedis): Promise<Redis> {
  const client = new Redis(redis.url, { lazyConnect: true })
  client.on('error', () => undefined)
  await client.connect()
  t.teardown(() => client.disconnect())
  return client
}

async function freshRedis(t: Test): Promise<{ redis: TestRedis; client: Redis }> {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  return { redis, client: await connect(t, redis) }
}

function incoming(overrides: Partial<IncomingEvent> = {}): IncomingEvent {
  const id = overrides.id ?? uniqueEventId()
  return {
    id,
    name: 'inquiry.approved',
    createdAt: '2026-03-02T14:05:11.482Z',
    body: personaEvent(id),
    subscribers: ['crm', 'audit'],
    source: 'webhook',
    ...overrides
  }
}

function fieldsOf(flat: string[]): Record<string, string> {
  const record: Record<string, string> = {}
  for (let index = 0; index + 1 < flat.length; index += 2) record[flat[index]!] = flat[index + 1]!
  return record
}

async function streamEntries(client: Redis, key: string): Promise<Record<string, string>[]> {
  const entries = await client.xrange(key, '-', '+')
  return entries.map(([, fields]) => fieldsOf(fields))
}

t.test('EventStore.record on a real Redis', async (t) => {
  const { client } = await freshRedis(t)
  const store = new EventStore(client, singleNode('persona-relay'), 7 * DAY)

  t.test('records a new id once and reports every later copy as a duplicate', async (t) => {
    const event = incoming()
    t.equal(await store.record(event), 'recorded')
    t.equal(await store.record(event), 'duplicate')
    t.equal(await store.record({ ...event, body: personaEvent(event.id, 'inquiry.declined'), name: 'inquiry.declined' }), 'duplicate',
      'the id alone decides')
    t.equal(await store.record(incoming()), 'recorded', 'another id is new')
  })

  t.test('keeps the id for dedupeTtlSeconds', async (t) => {
    const event = incoming()
    await store.record(event)
    const ttl = await client.ttl(`persona-relay:event:${event.id}`)
    t.ok(ttl > 7 * DAY - 10 && ttl <= 7 * DAY, `TTL ${ttl}`)
    await store.record(event)
    t.ok(await client.ttl(`persona-relay:event:${event.id}`) <= ttl, 'a duplicate does not extend the window')
  })

  t.test('queues one stream entry with the metadata and the exact body, and no body key', async (t) => {
    const before = await client.xlen('persona-relay:intake')
    const id = uniqueEventId()
    const body = `{"data":{"type":"event","id":"${id}","attributes":{"name":"inquiry.approved","note":"Zoë 🚀 \\u0000\\n",  "spaced" : [ 1 ,2 ]}}}\n`
    const receivedAt = new Date('2026-03-02T14:05:12.001Z')
    const event = incoming({ id, body, source: 'backfill' })
    t.equal(await store.record(event, receivedAt), 'recorded')
    t.equal(await store.record(event, new Date()), 'duplicate')
    const entries = await streamEntries(client, 'persona-relay:intake')
    t.equal(entries.length, before + 1, 'one entry, not one per copy')
    t.same(entries.at(-1), {
      id,
      name: 'inquiry.approved',
      createdAt: '2026-03-02T14:05:11.482Z',
      receivedAt: '2026-03-02T14:05:12.001Z',
      subscribers: 'crm,audit',
      source: 'backfill',
      body
    }, 'the body byte for byte')
    t.equal(await client.exists(`persona-relay:body:${id}`), 0, 'a body key is made only for a delivery that waits in a queue')
  })

  t.test('keeps only metadata, never the body, in the de-duplication record, marked as layout 2', async (t) => {
    const event = incoming()
    const receivedAt = new Date('2026-03-02T14:05:12.001Z')
    await store.record(event, receivedAt)
    await store.record({ ...event, source: 'backfill' }, new Date('2026-03-03T00:00:00.000Z'))
    t.same(await client.hgetall(`persona-relay:event:${event.id}`), {
      name: 'inquiry.approved',
      createdAt: '2026-03-02T14:05:11.482Z',
      receivedAt: '2026-03-02T14:05:12.001Z',
      subscribers: 'crm,audit',
      source: 'webhook',
      v: '2'
    }, 'the first copy is what stays recorded')
  })

  t.test('records an event without subscribers but queues and keeps nothing of it', async (t) => {
    const before = await client.xlen('persona-relay:intake')
    const event = incoming({ subscribers: [] })
    t.equal(await store.record(event), 'recorded')
    t.equal(await store.record(event), 'duplicate')
    t.equal(await client.exists(`persona-relay:event:${event.id}`), 1)
    const record = await client.hgetall(`persona-relay:event:${event.id}`)
    t.match(record, { name: 'inquiry.approved', subscribers: '', source: 'webhook' })
    t.notOk('pending' in record, 'no subscriber is waiting for it')
    t.equal(await client.exists(`persona-relay:body:${event.id}`), 0, 'no body: no one will be sent it')
    t.equal(await client.xlen('persona-relay:intake'), before, 'no stream entry')
    const ids = (await streamEntries(client, 'persona-relay:intake')).map((entry) => entry.id)
    t.notOk(ids.includes(event.id))
  })

  t.test('two stores on one connection share the script', async (t) => {
    const other = new EventStore(client, singleNode('persona-relay'), 60)
    const event = incoming()
    t.equal(await other.record(event), 'recorded')
    t.equal(await store.record(event), 'duplicate')
  })

  t.test('copies racing on separate connections record the id exactly once', async (t) => {
    const { redis } = await freshRedis(t)
    const stores = await Promise.all(
      Array.from({ length: 10 }, async () => new EventStore(await connect(t, redis), singleNode(), DAY))
    )
    for (let round = 0; round < 10; round++) {
      const event = incoming()
      const outcomes = await Promise.all(stores.flatMap((racer) => [racer.record(event), racer.record(event)]))
      t.equal(outcomes.filter((outcome) => outcome === 'recorded').length, 1, `round ${round}: one recorded of ${outcomes.length}`)
    }
    const racedClient = await connect(t, redis)
    t.equal(await racedClient.xlen('persona-relay:intake'), 10, 'one stream entry per id')
  })
})

t.test('records made in one turn of the event loop share one write to Redis, each with its own outcome', async (t) => {
  const { client } = await freshRedis(t)
  const store = new EventStore(client, singleNode('persona-relay'), DAY)
  const known = incoming()
  await store.record(known)
  const readsProcessed = async () => Number(/total_reads_processed:(\d+)/.exec(await client.info('stats'))![1])
  const before = await readsProcessed()
  const fresh = Array.from({ length: 50 }, () => incoming())
  // Each from a callback of its own, as requests are: what is called in one callback shares a write anyway.
  const outcomes = await Promise.all([known, ...fresh, fresh[0]!].map((event) =>
    new Promise<RecordOutcome>((resolve, reject) => setImmediate(() => store.record(event).then(resolve, reject)))))
  // The two INFO calls are reads too; 52 records one by one would be 52 more.
  t.ok(await readsProcessed() - before <= 4, 'the server read the 52 records in a handful of reads')
  t.same(outcomes, ['duplicate', ...fresh.map(() => 'recorded'), 'duplicate'],
    'a copy already recorded, and a copy of an event earlier in the same batch, are duplicates')
  t.equal(await client.xlen('persona-relay:intake'), 51, 'one stream entry per new id')
})

t.test('Redis away: every record of the batch fails; once it is back, records go through again', async (t) => {
  const { redis } = await freshRedis(t)
  // The intake's own connection settings, with a shorter command timeout for the test's sake.
  const client = new Redis(redis.url, { ...REQUEST_PATH_OPTIONS, commandTimeout: 500 })
  client.on('error', () => undefined)
  t.teardown(() => client.disconnect())
  await waitUntil('connected', () => client.status === 'ready')
  const store = new EventStore(client, singleNode('persona-relay'), DAY)
  await redis.kill()
  const events = Array.from({ length: 5 }, () => incoming())
  const results = await Promise.allSettled(events.map((event) => store.record(event)))
  t.same(results.map((result) => result.status), events.map(() => 'rejected'), 'no caller is told its event was recorded')
  await redis.start()
  await waitUntil('reconnected', () => client.status === 'ready')
  t.same(await Promise.all(events.map((event) => store.record(event))), events.map(() => 'recorded'),
    'Persona\'s retries are recorded')
})

t.test('the id is forgotten once dedupeTtlSeconds have passed', async (t) => {
  const { client } = await freshRedis(t)
  const store = new EventStore(client, singleNode('persona-relay'), 1)
  const event = incoming()
  t.equal(await store.record(event), 'recorded')
  await waitUntil('the record to expire', async () => (await client.exists(`persona-relay:event:${event.id}`)) === 0, 5000)
  t.equal(await store.record(event), 'recorded')
})

t.test('every key lives under the configured prefix', async (t) => {
  const { client } = await freshRedis(t)
  const tenantA = new EventStore(client, singleNode('tenant-a.relay_1'), DAY)
  const tenantB = new EventStore(client, singleNode('tenant-b'), DAY)
  t.same(tenantA.keys.intake(0), 'tenant-a.relay_1:intake')
  const event = incoming()
  t.equal(await tenantA.record(event), 'recorded')
  t.equal(await tenantB.record(event), 'recorded', 'prefixes do not share de-duplication')
  t.same((await client.keys('*')).sort(), [
    `tenant-a.relay_1:event:${event.id}`,
    'tenant-a.relay_1:intake',
    'tenant-a.relay_1:received',
    `tenant-b:event:${event.id}`,
    'tenant-b:intake',
    'tenant-b:received'
  ])
})

t.test('REDIS_PREFIX places the relay\'s records under it', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const client = await connect(t, redis)
  const { app } = await startRelay(t, { REDIS_PREFIX: 'relay-test.x' }, redis)
  const id = uniqueEventId()
  const body = personaEvent(id)
  const response = await app.inject({ method: 'POST', url: '/webhooks/persona', headers: signedHeaders(body), payload: body })
  t.same(response.json(), { received: true, id })
  t.equal(await client.exists(`relay-test.x:event:${id}`), 1)
  t.same(await client.keys('persona-relay:*'), [], 'nothing under the default prefix')
})

t.test('parallel copies of a new event through the HTTP route are recorded and delivered once', async (t) => {
  const IDS = 25
  const COPIES = 20
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const relay = await startRelay(t, { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' })
  const client = await connect(t, relay.redis)
  const address = await relay.app.listen({ port: 0, host: '127.0.0.1' })
  const agent = new Agent({ connections: COPIES, pipelining: 0 })
  t.teardown(() => agent.close())

  type Send = (body: string) => Promise<{ statusCode: number; json: { received: boolean; id: string; duplicate?: boolean } }>
  const transports: [string, Send][] = [
    ['app.inject', async (body) => {
      const response = await relay.app.inject({ method: 'POST', url: '/webhooks/persona', headers: signedHeaders(body), payload: body })
      return { statusCode: response.statusCode, json: response.json() }
    }],
    ['a listening server', async (body) => {
      const response = await request(`${address}/webhooks/persona`, { method: 'POST', headers: signedHeaders(body), body, dispatcher: agent })
      return { statusCode: response.statusCode, json: (await response.body.json()) as never }
    }]
  ]

  const sent: string[] = []
  for (const [transport, send] of transports) {
    t.test(transport, async (t) => {
      for (let round = 0; round < IDS; round++) {
        const id = uniqueEventId()
        sent.push(id)
        const body = personaEvent(id)
        const answers = await Promise.all(Array.from({ length: COPIES }, () => send(body)))
        t.same(answers.map((answer) => answer.statusCode), Array(COPIES).fill(200), `${id}: every copy is 200`)
        t.equal(answers.filter((answer) => answer.json.duplicate !== true).length, 1, `${id}: exactly one copy is not a duplicate`)
        t.ok(answers.every((answer) => answer.json.received === true && answer.json.id === id))
      }
    })
  }

  await t.test('the subscriber gets each id exactly once', async (t) => {
    const received = await subscriber.waitFor(sent.length, 30_000)
    const info = (await client.xinfo('STREAM', 'persona-relay:intake')) as unknown[]
    t.equal(Number(info[info.indexOf('entries-added') + 1]), sent.length, 'one intake entry per id, whatever the copies')
    t.same(received.map((delivery) => delivery.headers['webhook-id']).sort(), [...sent].sort())
    const queue = relay.app.delivery.queues.get('CRM')!
    await waitUntil('every delivery to complete', async () =>
      (await deliveryCounts(queue, relay.app.delivery.completions, 'CRM', ['completed'])).completed === sent.length)
    t.equal(await queue.getJobCountByTypes('waiting', 'delayed', 'active', 'failed'), 0, 'nothing else waits to be delivered')
    t.equal(subscriber.received.length, sent.length, 'no extra delivery')
  })
})
