import t from 'tap'
import { Redis } from 'ioredis'
import { personaEvent, signedHeaders, startRelay, uniqueEventId } from '../helpers/app.js'
import { startRedis } from '../helpers/redis.js'
import { startSubscriber } from '../helpers/subscriber.js'
import { waitUntil } from '../helpers/wait-until.js'

const PATH = '/webhooks/persona'

t.test('with REDIS_WAIT_REPLICAS=1 and no replica, Persona gets 503 and its retry is confirmed once a replica has the record', async (t) => {
  const primary = await startRedis()
  t.teardown(() => primary.stop())
  const subscriber = await startSubscriber(() => ({ status: 204 }))
  t.teardown(() => subscriber.close())
  const relay = await startRelay(t, {
    REDIS_WAIT_REPLICAS: '1',
    REDIS_WAIT_TIMEOUT_MS: '200',
    SUBSCRIBER_CRM_URL: subscriber.url,
    SUBSCRIBER_CRM_EVENTS: 'inquiry.*'
  }, primary)
  const id = uniqueEventId()
  const body = personaEvent(id)
  const post = () => relay.app.inject({ method: 'POST', url: PATH, headers: signedHeaders(body), payload: body })

  const unconfirmed = await post()
  t.equal(unconfirmed.statusCode, 503)
  t.equal(unconfirmed.json().code, 'REPLICAS_UNCONFIRMED')
  t.equal(await relay.app.redis.exists(relay.app.eventStore.keys.event(id)), 1, 'the record is there all the same, on the primary')

  const replica = await startRedis({ replicaOf: primary.port })
  t.teardown(() => replica.stop())
  const replicaClient = new Redis(replica.url)
  t.teardown(() => replicaClient.disconnect())
  await waitUntil('the replica in sync', async () => /master_link_status:up/.test(await replicaClient.info('replication')), 15_000)
  // Online on the primary's side too, acknowledging what it is sent: only then can WAIT count it.
  await waitUntil('the replica acknowledging', async () => (await relay.app.redis.wait(1, 100)) === 1, 15_000)

  const confirmed = await post()
  t.equal(confirmed.statusCode, 200, 'the retry is answered once a replica confirms')
  t.same(confirmed.json(), { received: true, id, duplicate: true }, 'as the duplicate it is')
  t.equal(await replicaClient.exists(relay.app.eventStore.keys.event(id)), 1, 'the replica has the record')
  t.equal(await replicaClient.hget(relay.app.eventStore.keys.event(id), 'seen'), '1', 'the duplicate wrote, so that WAIT covered the record')

  const fresh = uniqueEventId()
  const freshBody = personaEvent(fresh)
  const accepted = await relay.app.inject({ method: 'POST', url: PATH, headers: signedHeaders(freshBody), payload: freshBody })
  t.equal(accepted.statusCode, 200, 'a new event is confirmed at the first try')
  t.equal(await replicaClient.exists(relay.app.eventStore.keys.event(fresh)), 1, 'on the replica before Persona was answered')

  await waitUntil('both delivered', () => subscriber.received.length >= 2, 15_000)
  t.same(subscriber.received.map((request) => request.headers['webhook-id']).sort(), [id, fresh].sort(), 'each delivered once, the unconfirmed one too')
})

t.test('without REDIS_WAIT_REPLICAS nothing is waited for: a lone node answers 200', async (t) => {
  const relay = await startRelay(t, { SUBSCRIBER_CRM_URL: 'http://127.0.0.1:1/hook', SUBSCRIBER_CRM_EVENTS: 'inquiry.*' })
  const body = personaEvent(uniqueEventId())
  const response = await relay.app.inject({ method: 'POST', url: PATH, headers: signedHeaders(body), payload: body })
  t.equal(response.statusCode, 200)
})

t.test('a delivery handed to its queue keeps its intake entry until a replica has the job', async (t) => {
  const primary = await startRedis()
  t.teardown(() => primary.stop())
  const subscriber = await startSubscriber(() => ({ status: 500 }))
  t.teardown(() => subscriber.close())
  const relay = await startRelay(t, {
    REDIS_WAIT_REPLICAS: '1',
    REDIS_WAIT_TIMEOUT_MS: '100',
    // Take-overs come after a few seconds, not the default half minute.
    DELIVERY_LOCK_DURATION_MS: '1000',
    DELIVERY_RETRY_SCHEDULE: '3600',
    SUBSCRIBER_CRM_URL: subscriber.url,
    SUBSCRIBER_CRM_EVENTS: 'inquiry.*'
  }, primary)
  const { keys } = relay.app.eventStore
  const id = uniqueEventId()
  const body = personaEvent(id)
  t.equal((await relay.app.inject({ method: 'POST', url: PATH, headers: signedHeaders(body), payload: body })).statusCode, 503)
  await waitUntil('the failed first attempt', () => subscriber.received.length === 1, 15_000)
  await waitUntil('the hand-over refused for want of a replica', () =>
    relay.logs.lines.some((line) => line.msg === 'a first attempt could not be completed or handed over; the event will be re-queued'), 15_000)
  t.equal(await relay.app.redis.xlen(keys.intake(0)), 1, 'the intake entry stays')

  const replica = await startRedis({ replicaOf: primary.port })
  t.teardown(() => replica.stop())
  const replicaClient = new Redis(replica.url)
  t.teardown(() => replicaClient.disconnect())
  await waitUntil('the replica acknowledging', async () => (await relay.app.redis.wait(1, 100)) === 1, 15_000)
  await waitUntil('the entry taken over, its job confirmed and the entry acknowledged', async () => (await relay.app.redis.xlen(keys.intake(0))) === 0, 30_000)
  t.equal(await replicaClient.exists(`persona-relay:delivery-CRM:${id}`), 1, 'the job is on the replica')
  t.equal(subscriber.received.length, 1, 'the take-over sent nothing: the job holds the retry')
})
