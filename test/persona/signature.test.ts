import { createHmac } from 'node:crypto'
import t from 'tap'
import {
  MAX_SIGNATURE_GROUPS,
  computeSignature,
  parseSignatureHeader,
  signatureHeader,
  verifySignature,
  type VerificationResult
} from '../../src/persona/signature.js'
import { VECTORS as vectors } from '../helpers/fixtures.js'

const { t: T, secret_new: NEW, secret_old: OLD, v1_new: V1_NEW, v1_old: V1_OLD } = vectors
const BODY = Buffer.from(vectors.body, 'utf8')
const TOLERANCE = 300
const OK: VerificationResult = { ok: true, timestamp: T }

function verify(header: string | undefined, secrets: string[] = [NEW], nowSeconds = T, body = BODY) {
  return verifySignature(header, body, { secrets, toleranceSeconds: TOLERANCE, nowSeconds })
}

/** Persona's v1 computed here with node:crypto, independently of the module under test. */
function hmac(secret: string, timestamp: number, body = BODY): string {
  return createHmac('sha256', secret).update(`${timestamp}.${body.toString('utf8')}`).digest('hex')
}

t.test('computeSignature and signatureHeader reproduce the published vectors exactly', async (t) => {
  t.equal(computeSignature(NEW, T, BODY), V1_NEW)
  t.equal(computeSignature(OLD, T, BODY), V1_OLD)
  t.equal(signatureHeader([NEW], T, BODY), vectors.header_single)
  t.equal(signatureHeader([NEW, OLD], T, BODY), vectors.header_rotation)
  t.equal(signatureHeader([], T, BODY), '')
})

t.test('the vector headers verify under the secrets that signed them', async (t) => {
  const cases: [string, string, string[], VerificationResult][] = [
    ['single header, its secret', vectors.header_single, [NEW], OK],
    ['single header, its secret among others', vectors.header_single, [OLD, NEW], OK],
    ['single header, only the other secret', vectors.header_single, [OLD], { ok: false, reason: 'mismatch' }],
    ['rotation header, both secrets', vectors.header_rotation, [NEW, OLD], OK],
    ['rotation header, both secrets the other way round', vectors.header_rotation, [OLD, NEW], OK],
    ['rotation header, only the new secret', vectors.header_rotation, [NEW], OK],
    ['rotation header, only the old secret', vectors.header_rotation, [OLD], OK],
    ['rotation header, no secret configured', vectors.header_rotation, [], { ok: false, reason: 'mismatch' }],
    ['rotation header, a wrong secret', vectors.header_rotation, ['wbhsec_wrong'], { ok: false, reason: 'mismatch' }]
  ]
  for (const [label, header, secrets, expected] of cases) t.same(verify(header, secrets), expected, label)
})

t.test('rotation groups are accepted in either order and with any whitespace between them', async (t) => {
  const newGroup = `t=${T},v1=${V1_NEW}`
  const oldGroup = `t=${T},v1=${V1_OLD}`
  const headers = [
    `${newGroup} ${oldGroup}`,
    `${oldGroup} ${newGroup}`,
    `${oldGroup}\t${newGroup}`,
    `  ${oldGroup}   ${newGroup}  `
  ]
  for (const header of headers) {
    for (const secrets of [[NEW], [OLD], [NEW, OLD]]) {
      t.same(verify(header, secrets), OK, `${JSON.stringify(header)} with ${secrets.length} secret(s)`)
    }
  }
})

t.test('a body changed by one byte does not verify', async (t) => {
  const tampered = Buffer.from(BODY)
  tampered[tampered.length - 3] = tampered[tampered.length - 3]! ^ 0x01
  t.not(tampered.toString(), BODY.toString())
  t.same(verify(vectors.header_single, [NEW], T, tampered), { ok: false, reason: 'mismatch' })
  t.same(verify(vectors.header_rotation, [NEW, OLD], T, tampered), { ok: false, reason: 'mismatch' })
  t.same(verify(vectors.header_single, [NEW], T, Buffer.concat([BODY, Buffer.from(' ')])), { ok: false, reason: 'mismatch' })
})

t.test('v1 values of the wrong length or alphabet are a mismatch, never a throw', async (t) => {
  const cases: [string, string][] = [
    ['63 hex chars', V1_NEW.slice(0, 63)],
    ['65 hex chars', `${V1_NEW}0`],
    ['128 hex chars', V1_NEW + V1_NEW],
    ['one hex char', 'a'],
    ['64 non-hex chars', 'z'.repeat(64)],
    ['base64 of the digest', Buffer.from(V1_NEW, 'hex').toString('base64')],
    ['hex with a space-free suffix', `${V1_NEW};`],
    ['multibyte characters of the same string length', 'é'.repeat(64)]
  ]
  for (const [label, v1] of cases) {
    let result: VerificationResult | undefined
    t.doesNotThrow(() => {
      result = verify(`t=${T},v1=${v1}`)
    }, label)
    t.same(result, { ok: false, reason: 'mismatch' }, label)
  }
})

t.test('an uppercase hex v1 is accepted', async (t) => {
  t.same(verify(`t=${T},v1=${V1_NEW.toUpperCase()}`), OK)
  t.same(verify(`t=${T},v1=${V1_OLD.toUpperCase()}`, [OLD]), OK)
})

t.test('a missing or blank header is reported as missing', async (t) => {
  for (const header of [undefined, '', ' ', '\t \n']) {
    t.same(verify(header), { ok: false, reason: 'missing' }, JSON.stringify(header))
  }
})

t.test('headers with no usable t and v1 group are malformed', async (t) => {
  const headers = [
    'garbage',
    '=',
    ',,,',
    't=',
    'v1=',
    't=,v1=',
    `v1=${V1_NEW}`,
    `t=${T}`,
    `t=${T},v1=`,
    `t=${T};v1=${V1_NEW}`,
    `t:${T},v1:${V1_NEW}`,
    `T=${T},V1=${V1_NEW}`,
    `t=${T},v0=${V1_NEW}`,
    `sha256=${V1_NEW}`,
    `t=${T} v1=${V1_NEW}`,
    `v1,${Buffer.from(V1_NEW, 'hex').toString('base64')}`
  ]
  for (const header of headers) t.same(verify(header), { ok: false, reason: 'malformed' }, JSON.stringify(header))
})

t.test('unknown keys and pairs without = are ignored', async (t) => {
  const headers = [
    `t=${T},v0=abc,v1=${V1_NEW}`,
    `t=${T},v1=${V1_NEW},foo=bar`,
    `foo=bar,t=${T},v1=${V1_NEW}`,
    `t=${T},junk,v1=${V1_NEW}`,
    `t=${T},v2=${V1_OLD},v1=${V1_NEW},extra=a=b`
  ]
  for (const header of headers) t.same(verify(header), OK, header)
})

t.test('a group may carry several v1 values; any one matching is enough', async (t) => {
  t.same(verify(`t=${T},v1=${'0'.repeat(64)},v1=${V1_NEW}`), OK)
  t.same(verify(`t=${T},v1=${V1_OLD},v1=${V1_NEW}`, [OLD]), OK)
})

t.test('a t that is not a non-negative integer of at most 15 digits makes the group malformed', async (t) => {
  const timestamps = ['abc', `-${T}`, `${T}.0`, `${T}.5`, '1'.repeat(16), `+${T}`, `${T}e0`, ' ', `0x${T.toString(16)}`]
  for (const timestamp of timestamps) {
    t.same(verify(`t=${timestamp},v1=${V1_NEW}`), { ok: false, reason: 'malformed' }, `t=${timestamp}`)
  }
})

t.test('a group with a bad t is skipped while a good group still verifies', async (t) => {
  t.same(verify(`t=abc,v1=${V1_OLD} t=${T},v1=${V1_NEW}`, [NEW, OLD]), OK)
})

t.test(`more than MAX_SIGNATURE_GROUPS (${MAX_SIGNATURE_GROUPS}) groups are malformed`, async (t) => {
  const filler = `t=${T},v1=${'0'.repeat(64)}`
  const atLimit = [...Array<string>(MAX_SIGNATURE_GROUPS - 1).fill(filler), vectors.header_single].join(' ')
  const overLimit = [...Array<string>(MAX_SIGNATURE_GROUPS).fill(filler), vectors.header_single].join(' ')
  t.same(verify(atLimit), OK, 'exactly at the limit the matching group still counts')
  t.same(verify(overLimit), { ok: false, reason: 'malformed' })
  t.equal(parseSignatureHeader(overLimit), undefined)
})

t.test('a header longer than 4096 characters is malformed without parsing', async (t) => {
  const padded = `${vectors.header_single},pad=${'x'.repeat(4096)}`
  t.same(verify(padded), { ok: false, reason: 'malformed' })
  t.same(verify(`${vectors.header_single},pad=${'x'.repeat(4096 - vectors.header_single.length - 5)}`), OK, 'exactly 4096 is fine')
})

t.test('the timestamp must be within the tolerance of now, in either direction', async (t) => {
  const cases: [string, number, VerificationResult][] = [
    ['now', T, OK],
    ['at the past edge', T + TOLERANCE, OK],
    ['at the future edge', T - TOLERANCE, OK],
    ['one second past the past edge', T + TOLERANCE + 1, { ok: false, reason: 'stale' }],
    ['one second past the future edge', T - TOLERANCE - 1, { ok: false, reason: 'stale' }],
    ['a day old', T + 86400, { ok: false, reason: 'stale' }],
    ['a day ahead', T - 86400, { ok: false, reason: 'stale' }]
  ]
  for (const [label, now, expected] of cases) {
    t.same(verify(vectors.header_single, [NEW], now), expected, label)
    t.same(verify(vectors.header_rotation, [OLD], now), expected, `${label}, rotation header`)
  }
})

t.test('a header with only stale groups is stale whatever its signatures, as none is hashed', async (t) => {
  t.same(verify(vectors.header_single, [OLD], T + 86400), { ok: false, reason: 'stale' }, 'wrong secret')
  t.same(verify(`t=${T},v1=${'0'.repeat(64)} t=${T - 1},v1=zz`, [NEW], T + 86400), { ok: false, reason: 'stale' }, 'no real signature')
})

t.test('a fresh group that does not match, with no stale group, is a mismatch', async (t) => {
  const now = T + 3600
  t.same(verify(`t=${now},v1=${hmac(OLD, now)}`, [NEW], now), { ok: false, reason: 'mismatch' })
})

t.test('a group with a stale t plus a group with a fresh t verifies with the fresh t', async (t) => {
  const now = T + 3600
  const stale = vectors.header_single
  const fresh = `t=${now},v1=${hmac(NEW, now)}`
  t.same(verify(`${stale} ${fresh}`, [NEW], now), { ok: true, timestamp: now })
  t.same(verify(`${fresh} ${stale}`, [NEW], now), { ok: true, timestamp: now })
  t.same(verify(`${stale} t=${now},v1=${hmac(OLD, now)}`, [NEW], now), { ok: false, reason: 'stale' }, 'fresh group signed by another secret')
})

t.test('each group is checked against its own t', async (t) => {
  const other = T + 10
  t.same(verify(`t=${other},v1=${V1_NEW}`), { ok: false, reason: 'mismatch' }, 'the vector v1 under another t')
  t.same(verify(`t=${other},v1=${V1_OLD} t=${T},v1=${hmac(OLD, other)}`, [OLD]), { ok: false, reason: 'mismatch' }, 'crossed t values')
  t.same(verify(`t=${other},v1=${hmac(NEW, other)} ${vectors.header_single}`, [NEW], other), { ok: true, timestamp: other })
})

t.test('parseSignatureHeader returns the groups with lowercased v1 values', async (t) => {
  t.same(parseSignatureHeader(vectors.header_rotation), [
    { timestamp: T, signatures: [V1_NEW] },
    { timestamp: T, signatures: [V1_OLD] }
  ])
  t.same(parseSignatureHeader(`t=1,v1=ABC,v1=def,v9=x`), [{ timestamp: 1, signatures: ['abc', 'def'] }])
  t.same(parseSignatureHeader('t=0,v1=a'), [{ timestamp: 0, signatures: ['a'] }])
  t.same(parseSignatureHeader(`t=${'9'.repeat(15)},v1=a`), [{ timestamp: 999999999999999, signatures: ['a'] }])
  t.equal(parseSignatureHeader(''), undefined)
  t.equal(parseSignatureHeader('t=1'), undefined)
})
