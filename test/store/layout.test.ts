import t from 'tap'
import { Redis } from 'ioredis'
import { ConfigError } from '../../src/config/index.js'
import { personaEvent, signedHeaders, startRelay, uniqueEventId } from '../helpers/app.js'
import { startRedis } from '../helpers/redis.js'
import { waitUntil } from '../helpers/wait-until.js'

const PATH = '/webhooks/persona'
const SUBSCRIBER = { SUBSCRIBER_CRM_URL: 'http://127.0.0.1:1/hook', SUBSCRIBER_CRM_EVENTS: 'inquiry.*' }

t.test('a start with another INTAKE_PARTITIONS than the stored data\'s is refused, naming both', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const first = await startRelay(t, { ...SUBSCRIBER, INTAKE_PARTITIONS: '4' }, redis)
  t.equal(await first.app.redis.get('persona-relay:layout'), '{"partitions":4,"tagged":true}', 'the first start records its layout')
  await first.app.close()

  const refused = await startRelay(t, { ...SUBSCRIBER, INTAKE_PARTITIONS: '8' }, redis).catch((error: unknown) => error)
  t.type(refused, ConfigError)
  t.match((refused as ConfigError).message, /INTAKE_PARTITIONS: this Redis holds the relay's data \(prefix persona-relay\) in 4 intake partitions with hash tags, and this instance is configured for 8 with hash tags; .*Set INTAKE_PARTITIONS=4/)

  const again = await startRelay(t, { ...SUBSCRIBER, INTAKE_PARTITIONS: '4' }, redis)
  t.ok(again.app.eventStore, 'the same layout starts')
  const other = await startRelay(t, { ...SUBSCRIBER, INTAKE_PARTITIONS: '8', REDIS_PREFIX: 'fresh' }, redis)
  t.equal(await other.app.redis.get('fresh:layout'), '{"partitions":8,"tagged":true}', 'another prefix is a store of its own')
})

t.test('data written before layouts were recorded is the single node\'s: partitions are refused, the default starts', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const client = new Redis(redis.url)
  t.teardown(() => client.disconnect())
  // What the previous release leaves: its one stream, with its group, and no layout key.
  await client.xgroup('CREATE', 'persona-relay:intake', 'fanout', '0', 'MKSTREAM')

  const refused = await startRelay(t, { ...SUBSCRIBER, INTAKE_PARTITIONS: '2' }, redis).catch((error: unknown) => error)
  t.match((refused as ConfigError).message, /in 1 intake partition without hash tags, and this instance is configured for 2 with hash tags/)
  t.equal(await client.exists('persona-relay:layout'), 0, 'nothing recorded by the refused start')

  const relay = await startRelay(t, SUBSCRIBER, redis)
  t.equal(await client.get('persona-relay:layout'), '{"partitions":1,"tagged":false}')
  const body = personaEvent(uniqueEventId())
  t.equal((await relay.app.inject({ method: 'POST', url: PATH, headers: signedHeaders(body), payload: body })).statusCode, 200)
})

t.test('a mismatch found once Redis comes up after the start refuses every record with 503', async (t) => {
  const redis = await startRedis({ appendOnly: true })
  t.teardown(() => redis.stop())
  const client = new Redis(redis.url)
  await client.set('persona-relay:layout', '{"partitions":16,"tagged":true}')
  await client.quit()
  await redis.kill()

  const relay = await startRelay(t, SUBSCRIBER, redis)
  await redis.start()
  await waitUntil('the layout check to have run', () => relay.logs.lines.some((line) => line.msg === 'the stored data has another key layout; refusing to record events'), 20_000)
  const body = personaEvent(uniqueEventId())
  const response = await relay.app.inject({ method: 'POST', url: PATH, headers: signedHeaders(body), payload: body })
  t.equal(response.statusCode, 503)
  t.equal(response.json().code, 'STORE_UNAVAILABLE')
  t.equal(await relay.app.redis.exists(relay.app.eventStore.keys.event(JSON.parse(body).data.id)), 0, 'nothing written where no reader would look')
})
