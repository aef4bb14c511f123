import { readFileSync } from 'node:fs'
import t from 'tap'
import { Compile } from 'typebox/compile'
import { isRedaction, PersonaEventEnvelope, toPersonaEvent } from '../../src/persona/event.js'

const envelope = Compile(PersonaEventEnvelope)

function fixture(name: string): unknown {
  return JSON.parse(readFileSync(new URL(`../fixtures/${name}`, import.meta.url), 'utf8'))
}

function event(attributes: Record<string, unknown> = {}, data: Record<string, unknown> = {}): unknown {
  return {
    data: {
      type: 'event',
      id: 'evt_Test0000000000000000',
      attributes: { name: 'inquiry.approved', 'created-at': '2026-01-01T00:00:00.000Z', ...attributes },
      ...data
    }
  }
}

t.test('the Persona fixtures, in every key inflection, are envelopes and read the same fields', async (t) => {
  const cases: [string, string, { id: string; name: string; createdAt: string }][] = [
    ['inquiry.approved.json', 'created-at', { id: 'evt_7QkT2mZr9VbX4nLp8sWc3hJd', name: 'inquiry.approved', createdAt: '2026-03-02T14:05:11.482Z' }],
    ['inquiry.approved.camel.json', 'createdAt', { id: 'evt_CamelCase00000000000000', name: 'inquiry.approved', createdAt: '2026-03-02T14:05:11.482Z' }],
    ['inquiry.approved.snake.json', 'created_at', { id: 'evt_SnakeCase00000000000000', name: 'inquiry.approved', createdAt: '2026-03-02T14:05:11.482Z' }],
    ['report-watchlist.matched.json', 'created-at', { id: 'evt_Vw4Xy7Za1Bc5De9Fg2Hi6Jk3', name: 'report/watchlist.matched', createdAt: '2026-03-02T14:06:02.117Z' }],
    ['transaction.status-updated.json', 'created-at', { id: 'evt_Nq6Rb1Sc4Td8Ue2Vf5Wg9Xh3', name: 'transaction.status-updated', createdAt: '2026-03-02T15:10:44.300Z' }],
    ['verification.passed.json', 'created-at', { id: 'evt_3Hs8Kd1Lf6Mg9Nh2Pj5Qk7Rl', name: 'verification.passed', createdAt: '2026-03-02T14:00:31.905Z' }]
  ]
  for (const [file, key, expected] of cases) {
    const body = fixture(file)
    t.same(Object.keys((body as { data: { attributes: object } }).data.attributes).filter((k) => /^created/i.test(k)), [key], `${file} spells it ${key}`)
    if (envelope.Check(body)) {
      const { id, name, createdAt, object, attributes } = toPersonaEvent(body)
      t.same({ id, name, createdAt }, expected, file)
      t.match(object, { type: String, id: /^[a-z]+_/ }, `${file} names the object it is about`)
      t.equal(attributes, (body as { data: { attributes: object } }).data.attributes, 'the attributes as parsed, for filters')
    } else t.fail(`${file} is not an envelope`)
  }
})

t.test('toPersonaEvent reads created-at, createdAt and created_at', async (t) => {
  const cases: [string, Record<string, unknown>, string][] = [
    ['kebab', { 'created-at': '2026-01-01T00:00:01Z' }, '2026-01-01T00:00:01Z'],
    ['camel', { 'created-at': undefined, createdAt: '2026-01-01T00:00:02Z' }, '2026-01-01T00:00:02Z'],
    ['snake', { 'created-at': undefined, created_at: '2026-01-01T00:00:03Z' }, '2026-01-01T00:00:03Z'],
    ['kebab wins over the others', { createdAt: 'b', created_at: 'c' }, '2026-01-01T00:00:00.000Z'],
    ['camel wins over snake', { 'created-at': undefined, createdAt: 'b', created_at: 'c' }, 'b'],
    ['none', { 'created-at': undefined }, '']
  ]
  for (const [label, attributes, expected] of cases) {
    const body = JSON.parse(JSON.stringify(event(attributes))) as unknown
    t.ok(envelope.Check(body), `${label} is an envelope`)
    if (envelope.Check(body)) t.equal(toPersonaEvent(body).createdAt, expected, label)
  }
})

t.test('toPersonaEvent returns the id and name as sent', async (t) => {
  const body = event({ name: 'report/crypto_address.ready' }, { id: 'evt_a-B_9' })
  if (!envelope.Check(body)) return t.fail('not an envelope')
  const { id, name, createdAt } = toPersonaEvent(body)
  t.same({ id, name, createdAt }, { id: 'evt_a-B_9', name: 'report/crypto_address.ready', createdAt: '2026-01-01T00:00:00.000Z' })
})

t.test('the object is payload.data\'s type and id, when both are there and look like Persona\'s', async (t) => {
  const cases: [string, unknown, { type: string; id: string } | undefined][] = [
    ['an inquiry', { data: { type: 'inquiry', id: 'inq_ABC123' } }, { type: 'inquiry', id: 'inq_ABC123' }],
    ['a report type with a slash', { data: { type: 'report/watchlist', id: 'rep_1' } }, { type: 'report/watchlist', id: 'rep_1' }],
    ['no payload', undefined, undefined],
    ['a payload that is not an object', 'inq_1', undefined],
    ['no data', {}, undefined],
    ['data is a list', { data: [{ type: 'inquiry', id: 'inq_1' }] }, undefined],
    ['no id', { data: { type: 'inquiry' } }, undefined],
    ['a numeric id', { data: { type: 'inquiry', id: 42 } }, undefined],
    ['an id with a colon (it would be part of a Redis key)', { data: { type: 'inquiry', id: 'inq:1' } }, undefined],
    ['an id too long', { data: { type: 'inquiry', id: `inq_${'x'.repeat(200)}` } }, undefined],
    ['a type in capitals', { data: { type: 'Inquiry', id: 'inq_1' } }, undefined]
  ]
  for (const [label, payload, expected] of cases) {
    const body = JSON.parse(JSON.stringify(event({ payload }))) as unknown
    if (!envelope.Check(body)) {
      t.fail(`${label}: not an envelope`)
      continue
    }
    t.same(toPersonaEvent(body).object, expected, label)
  }
})

t.test('a redaction is an <object>.redacted event that names its object', async (t) => {
  const object = { type: 'inquiry', id: 'inq_1' }
  t.ok(isRedaction({ name: 'inquiry.redacted', object }))
  t.ok(isRedaction({ name: 'account.redacted', object: { type: 'account', id: 'act_1' } }))
  t.notOk(isRedaction({ name: 'inquiry.redacted' }), 'no object: nothing to redact')
  t.notOk(isRedaction({ name: 'inquiry.approved', object }))
  t.notOk(isRedaction({ name: 'inquiry.redacted.not', object }))
})

t.test('bodies that are not Persona event envelopes are rejected', async (t) => {
  const cases: [string, unknown][] = [
    ['null', null],
    ['an array', [event()]],
    ['a string', 'event'],
    ['no data', {}],
    ['data is an array', { data: [] }],
    ['type is not event', event({}, { type: 'inquiry' })],
    ['type is missing', event({}, { type: undefined })],
    ['id without the evt_ prefix', event({}, { id: 'inq_Test0000000000000000' })],
    ['id of only the prefix', event({}, { id: 'evt_' })],
    ['id with a space', event({}, { id: 'evt_a b' })],
    ['id with a slash', event({}, { id: 'evt_a/b' })],
    ['id longer than 128 after the prefix', event({}, { id: `evt_${'a'.repeat(129)}` })],
    ['id is a number', event({}, { id: 42 })],
    ['no attributes', event({}, { attributes: undefined })],
    ['attributes is a string', event({}, { attributes: 'inquiry.approved' })],
    ['empty name', event({ name: '' })],
    ['name is missing', event({ name: undefined })],
    ['name is not a string', event({ name: 7 })],
    ['name longer than 256', event({ name: 'a'.repeat(257) })],
    ['created-at is empty', event({ 'created-at': '' })],
    ['createdAt is a number', event({ createdAt: 1767225600 })],
    ['created_at is null', event({ created_at: null })]
  ]
  for (const [label, body] of cases) {
    t.notOk(envelope.Check(JSON.parse(JSON.stringify(body ?? null)) as unknown), label)
  }
})

t.test('data must be an object', async (t) => {
  for (const data of [null, 'evt_x', 1, true, []]) {
    t.notOk(envelope.Check({ data }), JSON.stringify(data))
  }
})

t.test('unknown fields anywhere are accepted and ignored', async (t) => {
  const body = {
    meta: { version: 2 },
    data: {
      type: 'event',
      id: 'evt_Unknown000000000000',
      relationships: {},
      attributes: {
        name: 'graph-query.cancelled',
        'created-at': '2026-01-01T00:00:00.000Z',
        'redacted-at': null,
        payload: { data: { type: 'brand-new-resource', id: 'x', attributes: { anything: [1, 2] } }, included: [] },
        futureField: { nested: true }
      }
    }
  }
  t.ok(envelope.Check(body))
  if (envelope.Check(body)) {
    const { id, name, createdAt, object } = toPersonaEvent(body)
    t.same({ id, name, createdAt, object }, { id: 'evt_Unknown000000000000', name: 'graph-query.cancelled', createdAt: '2026-01-01T00:00:00.000Z', object: { type: 'brand-new-resource', id: 'x' } })
  }
  t.ok(envelope.Check(event({ payload: undefined })), 'the payload itself is not required')
  t.ok(envelope.Check(event({ name: 'a'.repeat(256) })), 'a name of 256 characters is allowed')
  t.ok(envelope.Check(event({}, { id: `evt_${'a'.repeat(128)}` })), 'an id of 128 characters after the prefix is allowed')
})
