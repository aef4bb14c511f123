import t from 'tap'
import { Redis } from 'ioredis'
import { EventBodies } from '../../src/store/event-bodies.js'
import { EventStore } from '../../src/store/event-store.js'
import { storeKeys } from '../../src/store/keys.js'
import { personaEvent, uniqueEventId } from '../helpers/app.js'
import { startRedis, singleNode } from '../helpers/redis.js'

const DAY = 86_400
const KEYS = storeKeys(singleNode('persona-relay'))

t.test('EventBodies on a real Redis', async (t) => {
  const redis = await startRedis()
  const client = new Redis(redis.url)
  t.teardown(async () => {
    client.disconnect()
    await redis.stop()
  })
  const store = new EventStore(client, singleNode('persona-relay'), 7 * DAY)
  const bodies = new EventBodies(client, singleNode('persona-relay'), 7 * DAY)
  async function recorded(subscribers: string[]) {
    const id = uniqueEventId()
    const body = personaEvent(id)
    await store.record({ id, name: 'inquiry.approved', createdAt: '', body, subscribers, source: 'webhook' })
    return { id, body }
  }

  t.test('an event travels with its body in the stream: no body key until a delivery waits in a queue', async (t) => {
    const { id, body } = await recorded(['CRM', 'AUDIT'])
    t.equal(await client.exists(KEYS.body(id)), 0)
    const [[, fields]] = (await client.xrange(KEYS.intake(0), '-', '+')).slice(-1) as [[string, string[]]]
    t.equal(fields[fields.indexOf('body') + 1], body, 'the entry carries the exact body')
    t.same(await bodies.lookup(id, 'CRM'), { kind: 'expired' }, 'a queued delivery without a kept body finds none')
  })

  t.test('queued deliveries hold the body until the last of them lets go of it', async (t) => {
    const { id, body } = await recorded(['CRM', 'AUDIT', 'CRM_EU'])
    await bodies.holdAll('CRM', [{ eventId: id, body }])
    await bodies.holdAll('CRM', [{ eventId: id, body }])
    await bodies.holdAll('CRM_EU', [{ eventId: id, body }])
    t.equal(await client.hget(KEYS.event(id), 'pending'), 'CRM,CRM_EU', 'holding twice holds once')
    const [other, another] = [await recorded(['CRM']), await recorded(['CRM'])]
    await bodies.holdAll('CRM', [other, another].map(({ id: eventId, body }) => ({ eventId, body })))
    for (const { id: eventId, body } of [other, another]) t.equal(await client.get(KEYS.body(eventId)), body, 'several events held in one call')
    const ttl = await client.ttl(KEYS.body(id))
    t.ok(ttl > 7 * DAY - 10 && ttl <= 7 * DAY, `the body lives no longer than its record (TTL ${ttl})`)
    for (const subscriber of ['CRM', 'CRM_EU', 'AUDIT']) t.same(await bodies.lookup(id, subscriber), { kind: 'body', body }, subscriber)
    await bodies.release(id, 'CRM')
    await bodies.release(id, 'CRM')
    t.equal(await client.hget(KEYS.event(id), 'pending'), 'CRM_EU', 'releasing twice releases once')
    t.equal(await client.exists(KEYS.body(id)), 1)
    await bodies.release(id, 'CRM_EU')
    t.equal(await client.exists(KEYS.body(id)), 0, 'no one holds it: the body is gone at once')
    t.equal(await client.hget(KEYS.event(id), 'name'), 'inquiry.approved', 'the de-duplication record stays')
  })

  t.test('a subscriber whose completion is on the record has the event', async (t) => {
    const { id, body } = await recorded(['CRM', 'AUDIT'])
    await bodies.holdAll('CRM', [{ eventId: id, body }])
    await bodies.holdAll('AUDIT', [{ eventId: id, body }])
    await client.hset(KEYS.event(id), 'd:AUDIT', '{}')
    t.same(await bodies.lookup(id, 'AUDIT'), { kind: 'settled' })
    t.same(await bodies.lookup(id, 'CRM'), { kind: 'body', body })
    t.same(await bodies.undelivered([{ eventId: id, subscribers: ['CRM', 'AUDIT'] }]), [['CRM']])
  })

  t.test('an event recorded before layout 2 keeps its rule: a subscriber has it once pending no longer names it', async (t) => {
    const id = uniqueEventId()
    const body = personaEvent(id)
    await client.multi().hset(KEYS.event(id), { name: 'inquiry.approved', subscribers: 'CRM,AUDIT', pending: 'CRM,AUDIT' }).set(KEYS.body(id), body).exec()
    t.same(await bodies.lookup(id, 'CRM'), { kind: 'body', body })
    t.same(await bodies.lookup(id, 'CRM_E'), { kind: 'settled' }, 'a name that is only part of a routed name was never routed')
    await bodies.holdAll('CRM', [{ eventId: id, body: '' }])
    t.equal(await client.hget(KEYS.event(id), 'pending'), 'CRM,AUDIT', 'its deliveries hold the body already')
    await bodies.release(id, 'CRM')
    t.same(await bodies.lookup(id, 'CRM'), { kind: 'settled' })
    t.same(await bodies.undelivered([{ eventId: id, subscribers: ['CRM', 'AUDIT'] }]), [['AUDIT']])
    await bodies.release(id, 'AUDIT')
    t.equal(await client.exists(KEYS.body(id)), 0)
    t.same(await bodies.undelivered([{ eventId: uniqueEventId(), subscribers: ['CRM'] }]), [undefined], 'no record says nothing')
  })

  t.test('a body past its expiry is reported expired, not settled', async (t) => {
    const { id, body } = await recorded(['CRM'])
    await bodies.holdAll('CRM', [{ eventId: id, body }])
    await client.del(KEYS.body(id))
    t.same(await bodies.lookup(id, 'CRM'), { kind: 'expired' }, 'routed, held, no body')
    await client.del(KEYS.event(id))
    t.same(await bodies.lookup(id, 'CRM'), { kind: 'expired' }, 'nothing at all')
  })

  t.test('a dead letter kept past the de-duplication record still finds its body', async (t) => {
    const { id, body } = await recorded(['CRM', 'AUDIT'])
    await bodies.holdAll('CRM', [{ eventId: id, body }])
    await bodies.holdAll('AUDIT', [{ eventId: id, body }])
    await client.del(KEYS.event(id))
    t.same(await bodies.lookup(id, 'CRM'), { kind: 'body', body })
    await bodies.release(id, 'CRM')
    t.equal(await client.get(KEYS.body(id)), body, 'without the record, AUDIT may still need it: it lives out its expiry')
  })

  t.test('retain only ever lengthens the body\'s life', async (t) => {
    const { id, body } = await recorded(['CRM'])
    await bodies.holdAll('CRM', [{ eventId: id, body }])
    await bodies.retain(id, 30 * DAY)
    const ttl = await client.ttl(KEYS.body(id))
    t.ok(ttl > 30 * DAY - 10 && ttl <= 30 * DAY, `TTL ${ttl}`)
    await bodies.retain(id, DAY)
    t.ok(await client.ttl(KEYS.body(id)) > 29 * DAY, 'a shorter retention does not cut it')
  })
})
