import { readFileSync } from 'node:fs'
import { Readable } from 'node:stream'
import t, { type Test } from 'tap'
import { Redis } from 'ioredis'
import { request } from 'undici'
import type { LightMyRequestResponse } from 'fastify'
import { errorBody, Errors, type ErrorResponse } from '../../src/errors.js'
import { computeSignature, signatureHeader } from '../../src/persona/signature.js'
import { personaEvent, SECRET, signedHeaders, startRelay, uniqueEventId, type TestRelay } from '../helpers/app.js'
import { VECTORS } from '../helpers/fixtures.js'
import { startSubscriber } from '../helpers/subscriber.js'

const PATH = '/webhooks/persona'
const NEW_SECRET = 'wbhsec_aaaaaaaa-0000-0000-0000-000000000001'
const OLD_SECRET = 'wbhsec_aaaaaaaa-0000-0000-0000-000000000000'
/** Put in rejected bodies; no answer may ever contain it. */
const MARKER = 'must-never-be-echoed-5e1f'

const EXPECTED_ERROR = new Map<string, ErrorResponse>(
  Object.values(Errors).map((ErrorType) => {
    const error = new ErrorType()
    return [error.code, errorBody(error)]
  })
)

function fixture(name: string): string {
  return readFileSync(new URL(`../fixtures/${name}`, import.meta.url), 'utf8')
}

function now(): number {
  return Math.floor(Date.now() / 1000)
}

interface StoreState {
  eventKeys: string[]
  /** XINFO's entries-added: every XADD ever, so an entry already fanned out and deleted still counts. */
  entriesAdded: number
}

interface Relay extends TestRelay {
  client: Redis
  state(): Promise<StoreState>
  post(payload: string | Buffer | Readable | undefined, headers: Record<string, string>, url?: string): Promise<LightMyRequestResponse>
}

async function relayWithInspector(t: Test, overrides: Record<string, string> = {}): Promise<Relay> {
  const relay = await startRelay(t, overrides)
  const client = new Redis(relay.redis.url, { lazyConnect: true })
  client.on('error', () => undefined)
  await client.connect()
  t.teardown(() => client.disconnect())
  const prefix = relay.config.redis.layout.prefix
  return {
    ...relay,
    client,
    async state() {
      const eventKeys = (await client.keys(`${prefix}:event:*`)).sort()
      const info = (await client.xinfo('STREAM', `${prefix}:intake`).catch(() => [])) as unknown[]
      const at = info.indexOf('entries-added')
      return { eventKeys, entriesAdded: at < 0 ? 0 : Number(info[at + 1]) }
    },
    post: (payload, headers, url = relay.config.persona.path) =>
      relay.app.inject({ method: 'POST', url, headers, ...(payload === undefined ? {} : { payload }) })
  }
}

async function expectAccepted(t: Test, relay: Relay, payload: string | Buffer, headers: Record<string, string>, id: string) {
  const response = await relay.post(payload, headers)
  t.equal(response.statusCode, 200, 'answered 200')
  t.same(response.json(), { received: true, id })
  t.equal(await relay.client.exists(`${relay.config.redis.layout.prefix}:event:${id}`), 1, 'event id recorded')
}

/** Nothing lost, nothing recorded: a refused request leaves Redis as it was and echoes nothing. */
async function expectRejected(
  t: Test,
  relay: Relay,
  request: { payload?: string | Buffer | Readable; headers: Record<string, string>; method?: 'GET' | 'POST' | 'PUT'; url?: string },
  statusCode: number,
  code: string
) {
  const before = await relay.state()
  const response = await relay.app.inject({
    method: request.method ?? 'POST',
    url: request.url ?? relay.config.persona.path,
    headers: request.headers,
    ...(request.payload === undefined ? {} : { payload: request.payload })
  })
  t.equal(response.statusCode, statusCode, `answered ${statusCode}`)
  t.same(response.json<ErrorResponse>(), EXPECTED_ERROR.get(code), `body is the fixed ${code} error`)
  t.notOk(response.body.includes(MARKER), 'the body is not echoed')
  for (const [name, value] of Object.entries(request.headers)) {
    if (/signature/.test(name) && value.length >= 8) t.notOk(response.body.includes(value.slice(-16)), `${name} is not echoed`)
  }
  t.same(await relay.state(), before, 'nothing recorded')
  return response
}

function markedEvent(id = uniqueEventId(), name = 'inquiry.approved'): string {
  return personaEvent(id, name, { note: MARKER })
}

t.test('a signed event is acknowledged, recorded and delivered byte for byte', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const relay = await relayWithInspector(t, { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: 'inquiry.*' })
  const id = uniqueEventId()
  const body = personaEvent(id)
  const response = await relay.app.inject({ method: 'POST', url: PATH, headers: signedHeaders(body), payload: body })
  t.equal(response.statusCode, 200)
  t.same(response.json(), { received: true, id })
  const [request] = await subscriber.waitFor(1)
  t.equal(request!.body.toString(), body)
  t.equal(request!.headers['webhook-id'], id)
  t.same(await relay.state(), { eventKeys: [`persona-relay:event:${id}`], entriesAdded: 1 })
})

t.test('a duplicate is acknowledged with duplicate:true and delivered only once', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const relay = await relayWithInspector(t, { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: 'inquiry.*' })
  const id = uniqueEventId()
  const body = personaEvent(id)
  await expectAccepted(t, relay, body, signedHeaders(body), id)
  await subscriber.waitFor(1)

  // Persona signs every attempt afresh, so the copy carries a newer timestamp.
  const again = await relay.post(body, signedHeaders(body, { timestamp: now() + 1 }))
  t.equal(again.statusCode, 200)
  t.same(again.json(), { received: true, id, duplicate: true })
  const third = await relay.post(body, signedHeaders(body))
  t.same(third.json(), { received: true, id, duplicate: true })

  const sentinel = uniqueEventId()
  await expectAccepted(t, relay, personaEvent(sentinel), signedHeaders(personaEvent(sentinel)), sentinel)
  await subscriber.waitFor(2)
  t.same(await relay.state(), { eventKeys: [`persona-relay:event:${id}`, `persona-relay:event:${sentinel}`].sort(), entriesAdded: 2 })
  t.same(subscriber.received.map((request) => request.headers['webhook-id']).sort(), [id, sentinel].sort())
  t.equal(await relay.app.delivery.queues.get('CRM')!.count(), 0, 'no delivery left waiting')
})

t.test('signature failures are 401 with a stable code and record nothing', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  // Every event routes somewhere, so a wrongly accepted one would show up in the intake stream.
  const relay = await relayWithInspector(t, {
    PERSONA_TIMESTAMP_TOLERANCE_SECONDS: '60',
    SUBSCRIBER_ALL_URL: subscriber.url,
    SUBSCRIBER_ALL_EVENTS: '*'
  })
  const body = markedEvent()
  const json = { 'content-type': 'application/json' }
  const valid = computeSignature(SECRET, now(), Buffer.from(body))

  t.test('no Persona-Signature header is PERSONA_SIGNATURE_MISSING', async (t) => {
    await expectRejected(t, relay, { payload: body, headers: json }, 401, 'PERSONA_SIGNATURE_MISSING')
    await expectRejected(t, relay, { payload: body, headers: { ...json, 'persona-signature': '' } }, 401, 'PERSONA_SIGNATURE_MISSING')
    await expectRejected(t, relay, { payload: body, headers: { ...json, 'persona-signature': '   ' } }, 401, 'PERSONA_SIGNATURE_MISSING')
  })

  t.test('a header without a usable t=…,v1=… group is PERSONA_SIGNATURE_MALFORMED', async (t) => {
    const t0 = now()
    const headers = [
      'garbage',
      `v1=${valid}`,
      `t=${t0}`,
      `t=${t0},v1=`,
      `t=soon,v1=${valid}`,
      `t=-${t0},v1=${valid}`,
      `${'t=1,v1=00 '.repeat(8)}t=${t0},v1=${valid}`,
      `t=${t0},v1=${valid},x=${'y'.repeat(5000)}`
    ]
    for (const header of headers) {
      await expectRejected(t, relay, { payload: body, headers: { ...json, 'persona-signature': header } }, 401, 'PERSONA_SIGNATURE_MALFORMED')
    }
  })

  t.test('a signature that does not match is PERSONA_SIGNATURE_MISMATCH', async (t) => {
    const t0 = now()
    const cases: [string, string][] = [
      ['another secret', signatureHeader(['wbhsec_other'], t0, Buffer.from(body))],
      ['the body changed after signing', signatureHeader([SECRET], t0, Buffer.from(markedEvent()))],
      ['the timestamp changed after signing', `t=${t0 - 1},v1=${computeSignature(SECRET, t0, Buffer.from(body))}`],
      ['the secret without its wbhsec_ prefix', signatureHeader([SECRET.slice('wbhsec_'.length)], t0, Buffer.from(body))]
    ]
    for (const [what, header] of cases) {
      t.test(what, async (t) => {
        await expectRejected(t, relay, { payload: body, headers: { ...json, 'persona-signature': header } }, 401, 'PERSONA_SIGNATURE_MISMATCH')
      })
    }
  })

  t.test('a valid signature outside PERSONA_TIMESTAMP_TOLERANCE_SECONDS is PERSONA_SIGNATURE_STALE', async (t) => {
    for (const offset of [-90, 90, -86_400, 86_400]) {
      await expectRejected(t, relay, { payload: body, headers: signedHeaders(body, { timestamp: now() + offset }) }, 401, 'PERSONA_SIGNATURE_STALE')
    }
    // Stale groups are refused before any hashing, so their signatures are never looked at.
    const forged = signatureHeader(['wbhsec_other'], now() - 3600, Buffer.from(body))
    await expectRejected(t, relay, { payload: body, headers: { ...json, 'persona-signature': forged } }, 401, 'PERSONA_SIGNATURE_STALE')
  })

  t.test('a valid signature inside the window is accepted in either direction', async (t) => {
    for (const offset of [-40, 40]) {
      const id = uniqueEventId()
      const event = personaEvent(id)
      await expectAccepted(t, relay, event, signedHeaders(event, { timestamp: now() + offset }), id)
    }
  })

  t.test('v1 values of the wrong length or alphabet are 401, never 500', async (t) => {
    const t0 = now()
    const correct = computeSignature(SECRET, t0, Buffer.from(body))
    const values = [
      'a',
      correct.slice(1),
      `${correct}0`,
      correct.repeat(2),
      'z'.repeat(64),
      '\u00e9'.repeat(32),
      'f'.repeat(2000)
    ]
    for (const value of values) {
      await expectRejected(t, relay, { payload: body, headers: { ...json, 'persona-signature': `t=${t0},v1=${value}` } }, 401, 'PERSONA_SIGNATURE_MISMATCH')
    }
  })

  t.test('an unsigned body that is not an envelope is refused for its signature first', async (t) => {
    await expectRejected(t, relay, { payload: JSON.stringify({ note: MARKER }), headers: json }, 401, 'PERSONA_SIGNATURE_MISSING')
  })
})

t.test('secret rotation', async (t) => {
  const relay = await relayWithInspector(t, { PERSONA_WEBHOOK_SECRET: `${NEW_SECRET}, ${OLD_SECRET}` })

  const accepted: [string, string[]][] = [
    ['a header with two groups, new first', [NEW_SECRET, OLD_SECRET]],
    ['a header with two groups, old first', [OLD_SECRET, NEW_SECRET]],
    ['the new secret alone', [NEW_SECRET]],
    ['the old secret alone', [OLD_SECRET]],
    ['one unknown group and one old', ['wbhsec_unknown', OLD_SECRET]]
  ]
  for (const [what, secrets] of accepted) {
    t.test(`accepts ${what}`, async (t) => {
      const id = uniqueEventId()
      const body = personaEvent(id)
      await expectAccepted(t, relay, body, signedHeaders(body, { secrets }), id)
    })
  }

  t.test('refuses two groups under neither configured secret', async (t) => {
    const body = markedEvent()
    await expectRejected(t, relay, { payload: body, headers: signedHeaders(body, { secrets: ['wbhsec_a', 'wbhsec_b'] }) }, 401, 'PERSONA_SIGNATURE_MISMATCH')
  })

  t.test('accepts the groups in two Persona-Signature header lines, as a proxy may split them', async (t) => {
    const id = uniqueEventId()
    const body = personaEvent(id)
    const t0 = now()
    const lines = [signatureHeader(['wbhsec_unknown'], t0, Buffer.from(body)), signatureHeader([OLD_SECRET], t0, Buffer.from(body))]
    const injected = await relay.app.inject({
      method: 'POST',
      url: PATH,
      headers: { 'content-type': 'application/json', 'persona-signature': lines },
      payload: body
    })
    t.same(injected.json(), { received: true, id })

    // Node joins repeated header lines with ", ", which must still split into the two groups.
    const address = await relay.app.listen({ port: 0, host: '127.0.0.1' })
    const other = uniqueEventId()
    const otherBody = personaEvent(other)
    const otherLines = [signatureHeader(['wbhsec_unknown'], t0, Buffer.from(otherBody)), signatureHeader([NEW_SECRET], t0, Buffer.from(otherBody))]
    const response = await request(`${address}${PATH}`, {
      method: 'POST',
      headers: ['content-type', 'application/json', 'persona-signature', otherLines[0]!, 'persona-signature', otherLines[1]!],
      body: otherBody
    })
    t.equal(response.statusCode, 200)
    t.same(await response.body.json(), { received: true, id: other })
  })

  t.test('a relay with one secret accepts the two-group header Persona sends while rotating', async (t) => {
    const single = await relayWithInspector(t, { PERSONA_WEBHOOK_SECRET: OLD_SECRET })
    const id = uniqueEventId()
    const body = personaEvent(id)
    await expectAccepted(t, single, body, signedHeaders(body, { secrets: [NEW_SECRET, OLD_SECRET] }), id)
  })
})

t.test('the independently computed vectors verify', async (t) => {
  const tolerance = String(now() - VECTORS.t + 600)
  const both = await relayWithInspector(t, {
    PERSONA_WEBHOOK_SECRET: `${VECTORS.secret_new},${VECTORS.secret_old}`,
    PERSONA_TIMESTAMP_TOLERANCE_SECONDS: tolerance,
    DEDUPE_TTL_SECONDS: String(Number(tolerance) * 2 + 1)
  })
  const id = 'evt_TestVector000000000000'
  const headers = (signature: string) => ({ 'content-type': 'application/json; charset=utf-8', 'persona-signature': signature })
  await expectAccepted(t, both, VECTORS.body, headers(VECTORS.header_rotation), id)
  const again = await both.post(VECTORS.body, headers(VECTORS.header_single))
  t.same(again.json(), { received: true, id, duplicate: true })

  const oldOnly = await relayWithInspector(t, {
    PERSONA_WEBHOOK_SECRET: VECTORS.secret_old,
    PERSONA_TIMESTAMP_TOLERANCE_SECONDS: tolerance,
    DEDUPE_TTL_SECONDS: String(Number(tolerance) * 2 + 1)
  })
  await expectRejected(t, oldOnly, { payload: VECTORS.body, headers: headers(VECTORS.header_single) }, 401, 'PERSONA_SIGNATURE_MISMATCH')
  await expectAccepted(t, oldOnly, VECTORS.body, headers(`t=${VECTORS.t},v1=${VECTORS.v1_old}`), id)
})

t.test('bodies that are not a Persona event', async (t) => {
  const relay = await relayWithInspector(t, { SUBSCRIBER_ALL_URL: 'http://127.0.0.1:9/hook', SUBSCRIBER_ALL_EVENTS: '*' })

  t.test('a signed body that is not JSON is 400 INVALID_JSON', async (t) => {
    const bodies = [`not json ${MARKER}`, `{"data":{"type":"event","note":"${MARKER}"`, '']
    for (const body of bodies) {
      await expectRejected(t, relay, { payload: body, headers: signedHeaders(body) }, 400, 'INVALID_JSON')
    }
  })

  t.test('a signed JSON body whose only key is __proto__ is JSON, but not an event: 422', async (t) => {
    const body = `{"__proto__":{"note":"${MARKER}"}}`
    await expectRejected(t, relay, { payload: body, headers: signedHeaders(body) }, 422, 'INVALID_PERSONA_EVENT')
  })

  t.test('a signed envelope with bytes that are not UTF-8 is 400 INVALID_JSON', async (t) => {
    const invalid = Buffer.from([0xff, 0xfe, 0xc3])
    const id = uniqueEventId()
    const [head, tail] = personaEvent(id, 'inquiry.approved', { note: 'INVALID' }).split('INVALID') as [string, string]
    const envelope = Buffer.concat([Buffer.from(head), invalid, Buffer.from(tail)])
    await expectRejected(t, relay, { payload: envelope, headers: signedHeaders(envelope) }, 400, 'INVALID_JSON')
    t.equal(await relay.client.exists(`persona-relay:event:${id}`), 0)
    const notEnvelope = Buffer.concat([Buffer.from(`{"note":"${MARKER}`), invalid, Buffer.from('"}')])
    await expectRejected(t, relay, { payload: notEnvelope, headers: signedHeaders(notEnvelope) }, 400, 'INVALID_JSON')
  })

  t.test('a signed request without a body or content type is 422 INVALID_PERSONA_EVENT', async (t) => {
    const { 'content-type': _dropped, ...signature } = signedHeaders('')
    await expectRejected(t, relay, { headers: signature }, 422, 'INVALID_PERSONA_EVENT')
  })

  t.test('signed JSON that is not an envelope is 422 INVALID_PERSONA_EVENT', async (t) => {
    const event = (data: Record<string, unknown>) => JSON.stringify({ data: { ...data, note: MARKER } })
    const attributes = { name: 'inquiry.approved', 'created-at': '2026-11-27T10:00:00.000Z' }
    const bodies: [string, string][] = [
      ['wrong type', event({ type: 'inquiry', id: uniqueEventId(), attributes })],
      ['id without evt_', event({ type: 'event', id: 'inq_123', attributes })],
      ['empty id', event({ type: 'event', id: 'evt_', attributes })],
      ['id with a space', event({ type: 'event', id: 'evt_a b', attributes })],
      ['numeric id', event({ type: 'event', id: 42, attributes })],
      ['missing name', event({ type: 'event', id: uniqueEventId(), attributes: { 'created-at': attributes['created-at'] } })],
      ['empty name', event({ type: 'event', id: uniqueEventId(), attributes: { name: '' } })],
      ['missing attributes', event({ type: 'event', id: uniqueEventId() })],
      ['no data', JSON.stringify({ note: MARKER })],
      ['an array', JSON.stringify([MARKER])],
      ['a string', JSON.stringify(MARKER)],
      ['null', 'null']
    ]
    for (const [what, body] of bodies) {
      t.test(what, async (t) => {
        await expectRejected(t, relay, { payload: body, headers: signedHeaders(body) }, 422, 'INVALID_PERSONA_EVENT')
      })
    }
  })
})

t.test('bodies over BODY_LIMIT_BYTES are 413 BODY_TOO_LARGE', async (t) => {
  const relay = await relayWithInspector(t, { BODY_LIMIT_BYTES: '2048' })
  const sized = (id: string, length: number) => {
    const base = personaEvent(id, 'inquiry.approved', { note: '' })
    return personaEvent(id, 'inquiry.approved', { note: MARKER.padEnd(length - base.length, '.') })
  }
  const id = uniqueEventId()
  const tooLarge = sized(id, 2049)
  t.equal(Buffer.byteLength(tooLarge), 2049)
  await expectRejected(t, relay, { payload: tooLarge, headers: signedHeaders(tooLarge) }, 413, 'BODY_TOO_LARGE')
  await expectRejected(t, relay, { payload: sized(id, 200_000), headers: signedHeaders(sized(id, 200_000)) }, 413, 'BODY_TOO_LARGE')
  // Without a content-length the limit is enforced while reading.
  await expectRejected(t, relay, { payload: Readable.from([Buffer.from(tooLarge)]), headers: signedHeaders(tooLarge) }, 413, 'BODY_TOO_LARGE')
  const atLimit = sized(id, 2048)
  await expectAccepted(t, relay, atLimit, signedHeaders(atLimit), id)
})

t.test('only application/json is a webhook', async (t) => {
  const relay = await relayWithInspector(t)
  const body = markedEvent()
  const signed = signedHeaders(body)
  for (const contentType of ['text/plain', 'application/x-www-form-urlencoded', 'application/jsonp', 'text/json']) {
    await expectRejected(t, relay, { payload: body, headers: { ...signed, 'content-type': contentType } }, 415, 'UNSUPPORTED_MEDIA_TYPE')
  }
  const { 'content-type': _dropped, ...withoutContentType } = signed
  await expectRejected(t, relay, { payload: body, headers: withoutContentType }, 415, 'UNSUPPORTED_MEDIA_TYPE')

  for (const contentType of ['application/json; charset=utf-8', 'Application/JSON']) {
    const id = uniqueEventId()
    const event = personaEvent(id)
    await expectAccepted(t, relay, event, { ...signedHeaders(event), 'content-type': contentType }, id)
  }
})

t.test('routes other than POST on the webhook path are 404 NOT_FOUND', async (t) => {
  const relay = await relayWithInspector(t)
  const body = markedEvent()
  await expectRejected(t, relay, { method: 'GET', headers: {} }, 404, 'NOT_FOUND')
  await expectRejected(t, relay, { method: 'PUT', payload: body, headers: signedHeaders(body) }, 404, 'NOT_FOUND')
  await expectRejected(t, relay, { url: '/webhooks/other', payload: body, headers: signedHeaders(body) }, 404, 'NOT_FOUND')
  await expectRejected(t, relay, { url: `${PATH}/`, payload: body, headers: signedHeaders(body) }, 404, 'NOT_FOUND')
  await expectRejected(t, relay, { method: 'GET', url: '/nothing-here', headers: {} }, 404, 'NOT_FOUND')
})

t.test('PERSONA_WEBHOOK_PATH moves the webhook', async (t) => {
  const relay = await relayWithInspector(t, { PERSONA_WEBHOOK_PATH: '/hooks/persona-v2' })
  const id = uniqueEventId()
  const body = personaEvent(id)
  const stray = markedEvent()
  await expectRejected(t, relay, { url: PATH, payload: stray, headers: signedHeaders(stray) }, 404, 'NOT_FOUND')
  const response = await relay.post(body, signedHeaders(body), '/hooks/persona-v2')
  t.same(response.json(), { received: true, id })
})

t.test('split X-Persona-Signature and X-Persona-Timestamp headers', async (t) => {
  const splitHeaders = (body: string, timestamp = now(), secret = SECRET) => ({
    'content-type': 'application/json',
    'x-persona-signature': computeSignature(secret, timestamp, Buffer.from(body)),
    'x-persona-timestamp': String(timestamp)
  })

  t.test('are refused as missing by default', async (t) => {
    const relay = await relayWithInspector(t)
    const body = markedEvent()
    await expectRejected(t, relay, { payload: body, headers: splitHeaders(body) }, 401, 'PERSONA_SIGNATURE_MISSING')
  })

  t.test('are verified like Persona-Signature when PERSONA_ACCEPT_SPLIT_HEADERS=true', async (t) => {
    const relay = await relayWithInspector(t, { PERSONA_ACCEPT_SPLIT_HEADERS: 'true', PERSONA_TIMESTAMP_TOLERANCE_SECONDS: '60' })
    const id = uniqueEventId()
    const event = personaEvent(id)
    await expectAccepted(t, relay, event, splitHeaders(event), id)

    const body = markedEvent()
    await expectRejected(t, relay, { payload: body, headers: splitHeaders(body, now() - 120) }, 401, 'PERSONA_SIGNATURE_STALE')
    await expectRejected(t, relay, { payload: body, headers: splitHeaders(body, now(), 'wbhsec_other') }, 401, 'PERSONA_SIGNATURE_MISMATCH')
    const { 'x-persona-signature': _signature, ...timestampOnly } = splitHeaders(body)
    await expectRejected(t, relay, { payload: body, headers: timestampOnly }, 401, 'PERSONA_SIGNATURE_MALFORMED')
    const { 'x-persona-timestamp': _timestamp, ...signatureOnly } = splitHeaders(body)
    await expectRejected(t, relay, { payload: body, headers: signatureOnly }, 401, 'PERSONA_SIGNATURE_MALFORMED')
    await expectRejected(t, relay, { payload: body, headers: { 'content-type': 'application/json' } }, 401, 'PERSONA_SIGNATURE_MISSING')
  })
})

t.test('created-at is read in every key inflection', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const relay = await relayWithInspector(t, { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: 'inquiry.approved' })
  const createdAtById = new Map<string, string>()
  for (const file of ['inquiry.approved.json', 'inquiry.approved.camel.json', 'inquiry.approved.snake.json']) {
    const body = fixture(file)
    const { data } = JSON.parse(body) as { data: { id: string; attributes: Record<string, string> } }
    const createdAt = data.attributes['created-at'] ?? data.attributes.createdAt ?? data.attributes.created_at
    t.ok(createdAt, `${file} carries a creation time`)
    createdAtById.set(data.id, createdAt!)
    await expectAccepted(t, relay, body, signedHeaders(body), data.id)
    t.equal(await relay.client.hget(`persona-relay:event:${data.id}`, 'createdAt'), createdAt, `${file}: created-at recorded`)
  }
  const received = await subscriber.waitFor(3)
  for (const request of received) {
    const id = request.headers['webhook-id'] as string
    t.equal(request.headers['persona-event-created-at'], createdAtById.get(id), `${id}: created-at forwarded`)
  }
})

t.test('unknown event names without subscribers are acknowledged and recorded but not queued', async (t) => {
  const relay = await relayWithInspector(t, {
    DEDUPE_TTL_SECONDS: '3600',
    SUBSCRIBER_CRM_URL: 'http://127.0.0.1:9/hook',
    SUBSCRIBER_CRM_EVENTS: 'inquiry.*'
  })
  for (const name of ['graph-query.cancelled', 'report/crypto_address.ready', 'brand-new_family.some-thing']) {
    const id = uniqueEventId()
    const body = personaEvent(id, name)
    await expectAccepted(t, relay, body, signedHeaders(body), id)
    const key = `persona-relay:event:${id}`
    const ttl = await relay.client.ttl(key)
    t.ok(ttl > 3590 && ttl <= 3600, `${name}: TTL ${ttl} follows DEDUPE_TTL_SECONDS`)
    t.same(await relay.client.hmget(key, 'name', 'subscribers'), [name, ''])
    const duplicate = await relay.post(body, signedHeaders(body))
    t.same(duplicate.json(), { received: true, id, duplicate: true }, `${name}: a copy is still a duplicate`)
  }
  t.equal((await relay.state()).entriesAdded, 0, 'nothing entered the intake stream')
  t.equal(await relay.app.delivery.queues.get('CRM')!.count(), 0, 'nothing queued')
})

t.test('a relay without any subscriber acknowledges and records events', async (t) => {
  const relay = await relayWithInspector(t, { DEDUPE_TTL_SECONDS: '120', PERSONA_TIMESTAMP_TOLERANCE_SECONDS: '30' })
  const id = uniqueEventId()
  const body = personaEvent(id)
  await expectAccepted(t, relay, body, signedHeaders(body), id)
  const ttl = await relay.client.ttl(`persona-relay:event:${id}`)
  t.ok(ttl > 110 && ttl <= 120, `TTL ${ttl} follows DEDUPE_TTL_SECONDS`)
  t.equal((await relay.state()).entriesAdded, 0)
})
