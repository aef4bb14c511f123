import t from 'tap'
import Value from 'typebox/value'
import { sortPage } from '../../src/backfill/walk.js'
import { PersonaEventEnvelope } from '../../src/persona/event.js'
import { apiEvent } from '../helpers/persona-api.js'

const at = (minute: number) => new Date(Date.UTC(2026, 10, 27, 10, minute))
const RANGE = { sinceMs: at(10).getTime(), untilMs: at(50).getTime() }

t.test('an item in the range becomes the webhook it would have been: {"data": item}', async (t) => {
  const item = apiEvent('evt_inRange1', at(30), 'verification.passed')
  const { events, invalid, done } = sortPage([item], RANGE)
  t.same(events, [{
    id: 'evt_inRange1',
    name: 'verification.passed',
    createdAt: at(30).toISOString(),
    object: { type: 'inquiry', id: 'inq_inRange1' },
    attributes: item.attributes as Record<string, unknown>,
    createdAtMs: at(30).getTime(),
    body: JSON.stringify({ data: item })
  }])
  t.equal(invalid, 0)
  t.equal(done, false)
  t.ok(Value.Check(PersonaEventEnvelope, JSON.parse(events[0]!.body)), 'the body passes the intake\'s own envelope check')
})

t.test('newer than until is passed over; older than since ends the walk after this page', async (t) => {
  const page = [apiEvent('evt_new', at(55)), apiEvent('evt_edgeUntil', at(50)), apiEvent('evt_mid', at(20)), apiEvent('evt_edgeSince', at(10)), apiEvent('evt_old', at(5))]
  const { events, done } = sortPage(page, RANGE)
  t.same(events.map((event) => event.id), ['evt_edgeUntil', 'evt_mid', 'evt_edgeSince'], 'both ends are inside')
  t.equal(done, true)
})

t.test('an item slightly out of order after an older one on the same page is still taken', async (t) => {
  const { events, done } = sortPage([apiEvent('evt_old', at(5)), apiEvent('evt_late', at(12))], RANGE)
  t.same(events.map((event) => event.id), ['evt_late'])
  t.equal(done, true)
})

t.test('items that are not Persona events, or have no readable creation time, are counted and skipped', async (t) => {
  const good = apiEvent('evt_good', at(30))
  const noTime = apiEvent('evt_noTime', at(30))
  delete (noTime.attributes as Record<string, unknown>)['created-at']
  const badTime = apiEvent('evt_badTime', at(30))
  ;(badTime.attributes as Record<string, unknown>)['created-at'] = 'yesterday'
  const page = [null, 'evt_x', { type: 'inquiry', id: 'inq_1', attributes: { name: 'x' } }, { ...good, id: 'not-an-event-id' }, noTime, badTime, good]
  const { events, invalid, done } = sortPage(page, RANGE)
  t.same(events.map((event) => event.id), ['evt_good'])
  t.equal(invalid, 6)
  t.equal(done, false)
})

t.test('camel and snake key inflections are read like the webhook\'s', async (t) => {
  for (const key of ['createdAt', 'created_at']) {
    const item = apiEvent(`evt_${key.replace('_', '')}`, at(30))
    const attributes = item.attributes as Record<string, unknown>
    attributes[key] = attributes['created-at']
    delete attributes['created-at']
    t.same(sortPage([item], RANGE).events.map((event) => event.createdAtMs), [at(30).getTime()], key)
  }
})

t.test('an empty page ends nothing by itself and queues nothing', async (t) => {
  t.same(sortPage([], RANGE), { events: [], invalid: 0, done: false })
})
