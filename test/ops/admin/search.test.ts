import t from 'tap'
import { personaEvent, startRelay, uniqueEventId } from '../../helpers/app.js'
import { admin, ADMIN_TOKEN, type EventView } from '../../helpers/admin.js'
import { postEvent } from '../../helpers/delivery.js'
import { startSubscriber } from '../../helpers/subscriber.js'

interface SearchView { match: string; items: EventView[] }

const about = (objectId: string) => ({ payload: { data: { type: 'inquiry', id: objectId } } })

t.test('search finds events by event id, Persona object id, event name or time range, newest received first', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, { ADMIN_TOKEN, SUBSCRIBER_KYC_URL: subscriber.url, SUBSCRIBER_KYC_EVENTS: 'inquiry.*' })
  const approved = uniqueEventId()
  const completed = uniqueEventId()
  const other = uniqueEventId()
  const account = uniqueEventId()
  await postEvent(app, personaEvent(completed, 'inquiry.completed', about('inq_SEARCH1')))
  await postEvent(app, personaEvent(approved, 'inquiry.approved', about('inq_SEARCH1')))
  await postEvent(app, personaEvent(other, 'inquiry.approved', about('inq_SEARCH2')))
  const between = new Date().toISOString()
  await new Promise((resolve) => setTimeout(resolve, 5))
  await postEvent(app, personaEvent(account, 'account.created', about('inq_SEARCH3')))
  const search = async (query: string) => {
    const { statusCode, body } = await admin<SearchView>(app, 'GET', `/admin/events?${query}`)
    t.equal(statusCode, 200, query)
    return { match: body.match, ids: body.items.map((item) => item.id), items: body.items }
  }

  const byId = await search(`q=${approved}`)
  t.same([byId.match, byId.ids], ['event', [approved]], 'an event id')
  t.match(byId.items[0], { name: 'inquiry.approved', source: 'webhook', deliveries: [{ subscriber: 'KYC' }] }, 'with its deliveries, as GET /admin/events/:id')
  t.same(await search('q=inq_SEARCH1').then(({ match, ids }) => [match, ids]), ['object', [approved, completed]], 'an object id: its events')
  t.same(await search('q=inquiry.approved').then(({ match, ids }) => [match, ids]), ['name', [other, approved]], 'an event name')
  t.same((await search('')).ids, [account, other, approved, completed], 'nothing: every event')
  t.same((await search(`until=${encodeURIComponent(between)}`)).ids, [other, approved, completed], 'received until a time')
  t.same((await search(`since=${encodeURIComponent(between)}`)).ids, [account], 'received since a time')
  t.same((await search('limit=2')).ids, [account, other], 'at most `limit`')
  t.same((await search('q=evt_nothingRecordedHere')).ids, [], 'an unknown event id finds nothing')
  t.same(await search('q=no.such.event').then(({ match, ids }) => [match, ids]), ['name', []])
  t.equal((await admin(app, 'GET', '/admin/events?since=yesterday')).statusCode, 400, 'a time that is not ISO 8601')
  t.equal((await admin(app, 'GET', '/admin/events?limit=500')).statusCode, 400, 'a limit past 200')
})

t.test('the index of received events keeps no more than the records it points to', async (t) => {
  const { app, config } = await startRelay(t, { ADMIN_TOKEN })
  const old = uniqueEventId()
  const event = (id: string) => ({ id, name: 'inquiry.approved', createdAt: '', body: '{}', subscribers: [], source: 'webhook' as const })
  await app.eventStore.record(event(old), new Date(Date.now() - (config.dedupeTtlSeconds + 60) * 1000))
  t.not(await app.redis.zscore(app.eventStore.keys.received(0), old), null, 'indexed when recorded')
  const fresh = uniqueEventId()
  await app.eventStore.record(event(fresh))
  t.equal(await app.redis.zscore(app.eventStore.keys.received(0), old), null, 'an entry older than the records\' TTL goes with the next event')
  t.not(await app.redis.zscore(app.eventStore.keys.received(0), fresh), null)
})
