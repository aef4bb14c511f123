import t from 'tap'
import { Redis } from 'ioredis'
import { EventBodies } from '../../src/store/event-bodies.js'
import { EventStore } from '../../src/store/event-store.js'
import { personaEvent, uniqueEventId } from '../helpers/app.js'
import { startRedis } from '../helpers/redis.js'

const DAY = 86_400

t.test('EventBodies on a real Redis', async (t) => {
  const redis = await startRedis()
  const client = new Redis(redis.url)
  t.teardown(async () => {
    client.disconnect()
    await redis.stop()
  })
  const store = new EventStore(client, 'persona-relay', 7 * DAY)
  const bodies = new EventBodies(client, 'persona-relay')
  async function recorded(subscribers: string[]) {
    const id = uniqueEventId()
    const body = personaEvent(id)
    await store.record({ id, name: 'inquiry.approved', createdAt: '', body, subscribers, source: 'webhook' })
    return { id, body }
  }

  t.test('every routed subscriber finds the one stored body until it has it; the last one removes it', async (t) => {
    const { id, body } = await recorded(['CRM', 'AUDIT', 'CRM_EU'])
    for (const subscriber of ['CRM', 'AUDIT', 'CRM_EU']) t.same(await bodies.lookup(id, subscriber), { kind: 'body', body }, subscriber)
    t.same(await bodies.lookup(id, 'CRM_E'), { kind: 'settled' }, 'a name that is only part of a routed name was never routed')
    await bodies.release(id, 'CRM')
    t.same(await bodies.lookup(id, 'CRM'), { kind: 'settled' }, 'CRM has it')
    t.same(await bodies.lookup(id, 'CRM_EU'), { kind: 'body', body }, 'CRM_EU still needs it')
    await bodies.release(id, 'CRM')
    t.equal(await client.hget(`persona-relay:event:${id}`, 'pending'), 'AUDIT,CRM_EU', 'releasing twice removes once')
    await bodies.release(id, 'AUDIT')
    t.equal(await client.exists(`persona-relay:body:${id}`), 1)
    await bodies.release(id, 'CRM_EU')
    t.equal(await client.exists(`persona-relay:body:${id}`), 0, 'no one needs it: the body is gone at once')
    t.equal(await client.hget(`persona-relay:event:${id}`, 'name'), 'inquiry.approved', 'the de-duplication record stays')
    t.same(await bodies.lookup(id, 'AUDIT'), { kind: 'settled' })
  })

  t.test('a body past its expiry is reported expired, not settled', async (t) => {
    const { id } = await recorded(['CRM'])
    await client.del(`persona-relay:body:${id}`)
    t.same(await bodies.lookup(id, 'CRM'), { kind: 'expired' }, 'routed, pending, no body')
    await client.del(`persona-relay:event:${id}`)
    t.same(await bodies.lookup(id, 'CRM'), { kind: 'expired' }, 'nothing at all')
  })

  t.test('a dead letter kept past the de-duplication record still finds its body', async (t) => {
    const { id, body } = await recorded(['CRM', 'AUDIT'])
    await client.del(`persona-relay:event:${id}`)
    t.same(await bodies.lookup(id, 'CRM'), { kind: 'body', body })
    await bodies.release(id, 'CRM')
    t.equal(await client.get(`persona-relay:body:${id}`), body, 'without the record, AUDIT may still need it: it lives out its expiry')
  })

  t.test('retain only ever lengthens the body\'s life', async (t) => {
    const { id } = await recorded(['CRM'])
    await bodies.retain(id, 30 * DAY)
    const ttl = await client.ttl(`persona-relay:body:${id}`)
    t.ok(ttl > 30 * DAY - 10 && ttl <= 30 * DAY, `TTL ${ttl}`)
    await bodies.retain(id, DAY)
    t.ok(await client.ttl(`persona-relay:body:${id}`) > 29 * DAY, 'a shorter retention does not cut it')
  })
})
