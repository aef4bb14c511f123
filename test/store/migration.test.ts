import { readFileSync } from 'node:fs'
import t from 'tap'
import { Redis } from 'ioredis'
import { ADMIN_TOKEN } from '../helpers/admin.js'
import { personaEvent, signedHeaders, startRelay } from '../helpers/app.js'
import { startRedis } from '../helpers/redis.js'
import { startSubscriber } from '../helpers/subscriber.js'
import { waitUntil } from '../helpers/wait-until.js'

interface Captured {
  release: string
  events: { retry: string; dead: string; done: string; unread: string }
  keys: { key: string; pttl: number; dump: string }[]
}

// Written by the previous release (fixtures/previous-release/capture.ts): a retry due later, a dead
// letter, a completed delivery and an event no fan-out had read yet.
const CAPTURED = JSON.parse(readFileSync(new URL('../fixtures/previous-release/keys.json', import.meta.url), 'utf8')) as Captured

t.test('a single node written by the previous release is delivered after the upgrade, with no manual step', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const client = new Redis(redis.url)
  t.teardown(() => client.disconnect())
  for (const { key, pttl, dump } of CAPTURED.keys) await client.restore(key, Math.max(pttl, 0), Buffer.from(dump, 'base64'))
  t.equal(await client.exists('persona-relay:layout'), 0, 'the previous release recorded no layout')

  const subscriber = await startSubscriber(() => ({ status: 204 }))
  t.teardown(() => subscriber.close())
  const { events } = CAPTURED
  const relay = await startRelay(t, {
    ADMIN_TOKEN,
    SUBSCRIBER_RETRY_URL: subscriber.url, SUBSCRIBER_RETRY_EVENTS: 'inquiry.approved', SUBSCRIBER_RETRY_RETRY_SCHEDULE: '3600',
    SUBSCRIBER_DEAD_URL: subscriber.url, SUBSCRIBER_DEAD_EVENTS: 'inquiry.declined', SUBSCRIBER_DEAD_MAX_ATTEMPTS: '1',
    SUBSCRIBER_DONE_URL: subscriber.url, SUBSCRIBER_DONE_EVENTS: 'inquiry.completed'
  }, redis)
  const admin = (method: 'GET' | 'POST', url: string) => relay.app.inject({ method, url, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
  const webhookIds = () => subscriber.received.map((request) => request.headers['webhook-id'])

  await waitUntil('the unread intake entry and the due retry delivered', () =>
    webhookIds().includes(events.unread) && webhookIds().includes(events.retry), 20_000)
  t.equal(await client.get('persona-relay:layout'), '{"partitions":1,"tagged":false}', 'the store is taken as the single node\'s layout')

  const deadLetter = await admin('GET', `/admin/events/${events.dead}`)
  t.match(deadLetter.json(), { deliveries: [{ subscriber: 'DEAD', state: 'failed', attempts: [{ status: 500 }] }] }, 'the dead letter is still one')
  t.equal((await admin('POST', `/admin/deliveries/DEAD.${events.dead}/retry`)).statusCode, 202)
  await waitUntil('the replayed dead letter delivered', () => webhookIds().includes(events.dead), 20_000)

  t.match((await admin('GET', `/admin/events/${events.done}`)).json(), { deliveries: [{ subscriber: 'DONE', state: 'completed' }] }, 'the old completion is still shown')
  t.equal(subscriber.received.filter((request) => request.headers['webhook-id'] === events.done).length, 0, 'and not sent again')

  const redelivered = personaEvent(events.unread, 'inquiry.approved')
  const again = await relay.app.inject({ method: 'POST', url: '/webhooks/persona', headers: signedHeaders(redelivered), payload: redelivered })
  t.same(again.json(), { received: true, id: events.unread, duplicate: true }, 'an old event id is still known')

  const search = await admin('GET', '/admin/events?q=inq_test')
  t.same(search.json().items.map((item: { id: string }) => item.id).sort(), Object.values(events).sort(), 'the old object index is searched')
  t.equal(new Set(webhookIds()).size, webhookIds().length, 'nothing delivered twice')
})
