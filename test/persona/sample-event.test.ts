import t from 'tap'
import Value from 'typebox/value'
import { PersonaEventEnvelope, toPersonaEvent } from '../../src/persona/event.js'
import { personaId, sampleEvent } from '../../src/persona/sample-event.js'

interface Sample {
  data: {
    type: string
    id: string
    attributes: {
      name: string
      'created-at': string
      payload: { data: { type: string; id: string; attributes: { status: string } }; included: unknown[] }
    }
  }
}

t.test('personaId is the prefix and 24 unambiguous characters, fresh every time', async (t) => {
  const ids = Array.from({ length: 200 }, () => personaId('evt'))
  for (const id of ids) t.match(id, /^evt_[A-HJ-NP-Za-km-z2-9]{24}$/)
  t.equal(new Set(ids).size, ids.length)
})

t.test('a sample is a Persona event envelope the relay accepts, named and timed as asked', async (t) => {
  const now = new Date('2026-05-04T03:02:01.000Z')
  const { id, body } = sampleEvent('inquiry.approved', now)
  const parsed = JSON.parse(body) as Sample
  const envelope: unknown = parsed
  t.ok(Value.Check(PersonaEventEnvelope, envelope), 'matches the envelope schema')
  t.match(toPersonaEvent(envelope as PersonaEventEnvelope), { id, name: 'inquiry.approved', createdAt: '2026-05-04T03:02:01.000Z' })
  t.match(parsed.data, { type: 'event', id })
  t.match(parsed.data.attributes.payload, { data: { type: 'inquiry', id: /^inq_/, attributes: { status: 'approved' } }, included: [] })
  t.not(sampleEvent('inquiry.approved', now).id, id, 'each sample is a new event')
})

t.test('the resource type and id prefix follow the event name', async (t) => {
  const cases: [string, string, RegExp][] = [
    ['inquiry-session.started', 'inquiry-session', /^iqse_/],
    ['verification.passed', 'verification', /^ver_/],
    ['report/watchlist.matched', 'report/watchlist', /^repo_/],
    ['graph-query.cancelled', 'graph-query', /^grap_/],
    ['connect/share-token.created', 'connect/share-token', /^conn_/],
    ['ping', 'ping', /^ping_/],
    ['2fa.sent', '2fa', /^fa_/],
    ['42.answered', '42', /^obj_[A-Za-z0-9]{24}$/]
  ]
  for (const [name, type, idPattern] of cases) {
    const payload = (JSON.parse(sampleEvent(name).body) as Sample).data.attributes.payload.data
    t.equal(payload.type, type, `${name}: type`)
    t.match(payload.id, idPattern, `${name}: id ${payload.id}`)
  }
})
