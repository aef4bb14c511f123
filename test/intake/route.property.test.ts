import { validateHeaderValue } from 'node:http'
import t from 'tap'
import fc from 'fast-check'
import { computeSignature } from '../../src/persona/signature.js'
import { personaEvent, SECRET, startRelay } from '../helpers/app.js'
import { propertyRuns } from '../helpers/property-runs.js'

const RUNS = propertyRuns(300)
const PATH = '/webhooks/persona'
const BODY_LIMIT = 4096
const SIGNATURE_CODES = ['PERSONA_SIGNATURE_MISSING', 'PERSONA_SIGNATURE_MALFORMED', 'PERSONA_SIGNATURE_MISMATCH', 'PERSONA_SIGNATURE_STALE']

interface Case {
  kind: string
  headers: Record<string, string | string[]>
  payload: Buffer
  status: number
  /** Acceptable `code`s of the error body (200: none). */
  codes?: string[]
}

const now = () => Math.floor(Date.now() / 1000)
const sign = (body: Buffer, timestamp: number | string = now()) => `t=${timestamp},v1=${computeSignature(SECRET, timestamp as number, body)}`
const headerSafe = (value: string) => {
  try {
    validateHeaderValue('x', value)
    return true
  } catch {
    return false
  }
}

let sequence = 0
/** A fresh event id per generated value; fast-check may replay a value while shrinking, hence the counter. */
const freshId = fc.stringMatching(/^[A-Za-z0-9]{1,20}$/).map((suffix) => `evt_prop${process.pid}x${(sequence += 1)}x${suffix}`)
const eventName = fc.oneof(
  fc.constantFrom('inquiry.approved', 'report/watchlist.matched', 'graph-query.cancelled', 'x'),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 })
)
/** `[[[…]]]` or `{"a":{"a":…}}` nested up to the body limit. */
const deep = fc.oneof(
  fc.integer({ min: 1, max: 1900 }).map((depth) => `${'['.repeat(depth)}${']'.repeat(depth)}`),
  fc.integer({ min: 1, max: 650 }).map((depth) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`)
)
const envelope = fc.tuple(freshId, eventName, fc.option(deep, { nil: undefined }))
  .map(([id, name, payload]) => {
    const body = personaEvent(id, name)
    return payload === undefined ? body : body.replace('"payload":', `"deep":${payload},"payload":`)
  })
  .filter((body) => Buffer.byteLength(body) <= BODY_LIMIT)
const jsonContentType = fc.constantFrom('application/json', 'application/json; charset=utf-8', 'application/json;charset=UTF-8')
const signatureHeader = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 200 }),
  fc.string({ unit: 'grapheme', maxLength: 200 }),
  fc.stringMatching(/^t=-?\d{0,20}(\.\d+)?,v1=[0-9a-zA-Z]{0,70}$/)
).filter(headerSafe)

const cases: fc.Arbitrary<Case> = fc.oneof(
  // 415: anything that is not application/json, whatever the body and signature.
  fc.tuple(
    fc.oneof(
      fc.constantFrom('text/plain', 'application/x-www-form-urlencoded', 'application/xml', 'multipart/form-data; boundary=x',
        'application/json-patch+json', 'text/json', 'application/jsonp', 'application/vnd.api+json', 'json'),
      fc.stringMatching(/^[a-z]{1,10}\/[a-z0-9.+-]{1,20}$/).filter((type) => type !== 'application/json')
    ),
    fc.uint8Array({ minLength: 1, maxLength: 300 })
  ).map(([type, bytes]) => {
    const payload = Buffer.from(bytes)
    return { kind: 'wrong content type', headers: { 'content-type': type, 'persona-signature': sign(payload) }, payload, status: 415, codes: ['UNSUPPORTED_MEDIA_TYPE'] }
  }),
  // 413: over BODY_LIMIT_BYTES, signed or not.
  fc.tuple(envelope, fc.integer({ min: 1, max: 20_000 }), fc.boolean(), jsonContentType).map(([body, extra, signed, type]) => {
    const payload = Buffer.from(body.replace('"payload":', `"pad":"${'x'.repeat(BODY_LIMIT + extra)}","payload":`))
    return { kind: 'oversized', headers: { 'content-type': type, ...(signed ? { 'persona-signature': sign(payload) } : {}) }, payload, status: 413, codes: ['BODY_TOO_LARGE'] }
  }),
  // 400: not JSON (or not UTF-8), signed or not.
  fc.tuple(
    fc.oneof(
      fc.string({ unit: 'grapheme', minLength: 1, maxLength: 300 }).map((text) => Buffer.from(text)),
      fc.uint8Array({ minLength: 1, maxLength: 300 }).map((bytes) => Buffer.from(bytes)),
      envelope.map((body) => Buffer.from(body.slice(0, -1))),
      deep.map((text) => Buffer.from(text.slice(1)))
    ).filter((bytes) => {
      if (bytes.length > BODY_LIMIT) return false
      try {
        JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
        return false
      } catch {
        return true
      }
    }),
    fc.boolean(), jsonContentType
  ).map(([payload, signed, type]) => ({
    kind: 'not JSON', headers: { 'content-type': type, ...(signed ? { 'persona-signature': sign(payload) } : {}) }, payload, status: 400, codes: ['INVALID_JSON']
  })),
  // 401: an envelope with a missing, random, truncated, unusable-t or over-duplicated signature.
  fc.tuple(envelope, fc.nat(), signatureHeader, fc.integer({ min: 9, max: 30 }), jsonContentType).chain(([body, cut, random, copies, type]) => {
    const payload = Buffer.from(body)
    const good = sign(payload)
    return fc.constantFrom<[string, string | string[] | undefined, string[]]>(
      ['missing', undefined, ['PERSONA_SIGNATURE_MISSING']],
      ['blank', '   ', ['PERSONA_SIGNATURE_MISSING']],
      // A random group with a t outside the window is stale without being hashed.
      ['random', random, SIGNATURE_CODES],
      ['truncated', good.slice(0, cut % good.length), ['PERSONA_SIGNATURE_MISSING', 'PERSONA_SIGNATURE_MALFORMED', 'PERSONA_SIGNATURE_MISMATCH']],
      ['non-hex v1', good.replace(/v1=.{64}/, `v1=${'g'.repeat(64)}`), ['PERSONA_SIGNATURE_MISMATCH']],
      ['negative t', sign(payload, `-${now()}`), ['PERSONA_SIGNATURE_MALFORMED']],
      ['fractional t', sign(payload, `${now()}.5`), ['PERSONA_SIGNATURE_MALFORMED']],
      ['huge t', sign(payload, '9'.repeat(16 + (cut % 30))), ['PERSONA_SIGNATURE_MALFORMED']],
      ['stale t', sign(payload, now() - 301 - (cut % 1e9)), ['PERSONA_SIGNATURE_STALE']],
      ['future t', sign(payload, now() + 400 + (cut % 1e9)), ['PERSONA_SIGNATURE_STALE']],
      ['too many groups', Array.from({ length: copies }, () => good).join(' '), ['PERSONA_SIGNATURE_MALFORMED']],
      ['too many header lines', Array.from({ length: copies }, () => good), ['PERSONA_SIGNATURE_MALFORMED']]
    ).map(([what, header, codes]) => ({
      kind: `signature ${what}`,
      headers: { 'content-type': type, ...(header !== undefined ? { 'persona-signature': header } : {}) },
      payload, status: 401, codes
    }))
  }),
  // 422: signed JSON that is not a Persona envelope (any JSON value, deep nesting included).
  fc.tuple(fc.oneof(fc.json({ maxDepth: 6 }), deep), jsonContentType)
    .filter(([text]) => Buffer.byteLength(text) <= BODY_LIMIT)
    .map(([text, type]) => {
      const payload = Buffer.from(text)
      return { kind: 'not an envelope', headers: { 'content-type': type, 'persona-signature': sign(payload) }, payload, status: 422, codes: ['INVALID_PERSONA_EVENT'] }
    }),
  // 200: a valid event (odd names, deep payloads), signed once or as several groups/header lines.
  fc.tuple(envelope, fc.integer({ min: 1, max: 8 }), fc.boolean(), jsonContentType).map(([body, groups, lines, type]) => {
    const payload = Buffer.from(body)
    const copies = Array.from({ length: groups }, (_, i) => (i === 0 ? sign(payload) : `t=${now()},v1=${'0'.repeat(64)}`))
    return { kind: 'valid', headers: { 'content-type': type, 'persona-signature': lines ? copies : copies.join(' ') }, payload, status: 200 }
  })
)

t.test(`intake answers generated bad (and good) requests with their documented status, never 5xx (${RUNS} cases)`, async (t) => {
  const { app } = await startRelay(t, { BODY_LIMIT_BYTES: String(BODY_LIMIT), LOG_LEVEL: 'silent' })
  const seen = new Map<string, number>()
  const property = fc.asyncProperty(cases, async (c) => {
    const response = await app.inject({ method: 'POST', url: PATH, headers: c.headers, payload: c.payload })
    seen.set(`${c.kind} ${response.statusCode}`, (seen.get(`${c.kind} ${response.statusCode}`) ?? 0) + 1)
    if (response.statusCode !== c.status) throw new Error(`${c.kind}: expected ${c.status}, got ${response.statusCode} ${response.body}`)
    const answer = response.json() as { code?: string; received?: boolean; duplicate?: boolean }
    if (c.status === 200) {
      if (answer.received !== true || answer.duplicate) throw new Error(`valid: unexpected answer ${response.body}`)
      const again = await app.inject({ method: 'POST', url: PATH, headers: c.headers, payload: c.payload })
      if (again.statusCode !== 200 || again.json().duplicate !== true) throw new Error(`valid: repeat answered ${again.statusCode} ${again.body}`)
    } else if (!c.codes!.includes(answer.code ?? '')) {
      throw new Error(`${c.kind}: expected code ${c.codes!.join('|')}, got ${response.body}`)
    }
  })
  // A counterexample may hold a 20 KB body: report its kind and answer, not the whole value.
  const outcome = await fc.check(property, { numRuns: RUNS })
  if (outcome.failed) t.fail(`${String(outcome.errorInstance)} (seed ${outcome.seed}, ${outcome.numRuns} runs)`.slice(0, 2000))
  else t.pass(`${outcome.numRuns} generated requests`)
  const health = await app.inject({ method: 'GET', url: '/healthz' })
  t.equal(health.statusCode, 200, 'still alive')
  t.ok(seen.size > 0)
  t.comment([...seen].sort().map(([key, count]) => `${key}: ${count}`).join(', '))
})
