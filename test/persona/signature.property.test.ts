import t from 'tap'
import fc from 'fast-check'
import { computeSignature, MAX_SIGNATURE_GROUPS, parseSignatureHeader, verifySignature } from '../../src/persona/signature.js'
import { propertyRuns } from '../helpers/property-runs.js'

const RUNS = propertyRuns(2000)
const SECRETS = ['wbhsec_property-new', 'wbhsec_property-old']
const NOW = 1_800_000_000
const TOLERANCE = 300
const options = { secrets: SECRETS, toleranceSeconds: TOLERANCE, nowSeconds: NOW }

const hex64 = fc.stringMatching(/^[0-9a-f]{64}$/)
/** `t` values the parser must refuse: negative, fractional, exponent, over 15 digits, empty, odd text. */
const unusableT = fc.oneof(
  fc.integer({ min: -1e12, max: -1 }).map(String),
  fc.double({ min: 0, max: 1e10, noNaN: true }).filter((n) => !Number.isInteger(n)).map(String),
  fc.bigInt({ min: 10n ** 15n, max: 10n ** 40n }).map(String),
  fc.constantFrom('', '1e9', '0x10', '+1700000000', ' 1', 'NaN', 'Infinity', '١٧٠٠'),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 }).filter((s) => !/^\d{1,15}$/.test(s))
)
/** `v1` values that can never match: non-hex, truncated, too long. */
const wrongV1 = fc.oneof(
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 80 }).filter((s) => !/^[0-9a-fA-F]{64}$/.test(s)),
  hex64.map((h) => h.slice(0, 63)),
  hex64.map((h) => `${h}0`),
  fc.stringMatching(/^[0-9a-f]{1,63}$/)
)
const anyHeader = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 300 }),
  fc.string({ unit: 'grapheme', maxLength: 300 }),
  fc.tuple(
    fc.array(fc.tuple(fc.constantFrom('t', 'v1', 'v0', 'T', '', 'x'), fc.string({ maxLength: 70 })), { maxLength: 12 }),
    fc.constantFrom(',', ' ', ',,', '\t')
  ).map(([pairs, separator]) => pairs.map(([k, v]) => `${k}=${v}`).join(separator)),
  fc.string({ maxLength: 10 }).map((s) => s.repeat(1000))
)

function validGroup(timestamp: number, body: Buffer, secret = SECRETS[0]!): string {
  return `t=${timestamp},v1=${computeSignature(secret, timestamp, body)}`
}

t.test(`any header (${RUNS} cases): the parser and verifier never throw, and forged input never verifies`, async (t) => {
  fc.assert(fc.property(anyHeader, fc.uint8Array({ maxLength: 200 }), (header, bytes) => {
    const groups = parseSignatureHeader(header)
    if (groups !== undefined) {
      if (groups.length < 1 || groups.length > MAX_SIGNATURE_GROUPS) return false
      for (const group of groups) {
        if (!Number.isSafeInteger(group.timestamp) || group.timestamp < 0 || group.signatures.length === 0) return false
      }
    }
    const result = verifySignature(header, Buffer.from(bytes), options)
    if (result.ok) return false
    // Stale only when a group lies outside the window (none of those is hashed).
    const anyStale = groups?.some((group) => Math.abs(NOW - group.timestamp) > TOLERANCE) ?? false
    return result.reason === 'stale' ? anyStale : result.reason !== 'mismatch' || !anyStale
  }), { numRuns: RUNS })
  t.pass()
})

t.test(`a valid group among up to 7 broken ones, in any order and spacing (${RUNS} cases), verifies`, async (t) => {
  const broken = fc.oneof(
    fc.tuple(unusableT, hex64).map(([ts, v1]) => `t=${ts},v1=${v1}`),
    fc.tuple(fc.integer({ min: 0, max: 2e9 }), wrongV1).map(([ts, v1]) => `t=${ts},v1=${v1}`),
    fc.constantFrom('garbage', 't=', 'v1=', ',,,', '=', 'v1=abc,t')
  )
  fc.assert(fc.property(
    fc.uint8Array({ maxLength: 200 }), fc.array(broken, { maxLength: MAX_SIGNATURE_GROUPS - 1 }), fc.nat(), fc.constantFrom(' ', '  ', '\t', ' \t\n'),
    fc.integer({ min: -TOLERANCE, max: TOLERANCE }), fc.constantFrom(...SECRETS),
    (bytes, others, position, space, skew, secret) => {
      const body = Buffer.from(bytes)
      const groups = [...others]
      groups.splice(position % (others.length + 1), 0, validGroup(NOW + skew, body, secret))
      const header = groups.map((group) => group.replace(/\s/g, '')).join(space)
      const result = verifySignature(header, body, options)
      return result.ok && result.timestamp === NOW + skew
    }), { numRuns: RUNS })
  t.pass()
})

t.test(`truncated valid headers (${RUNS} cases) never verify`, async (t) => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 100 }), fc.integer({ min: 1, max: 140 }), (bytes, keep) => {
    const body = Buffer.from(bytes)
    const header = validGroup(NOW, body)
    const result = verifySignature(header.slice(0, Math.min(keep, header.length - 1)), body, options)
    return !result.ok && result.reason !== 'stale'
  }), { numRuns: RUNS })
  t.pass()
})

t.test(`signed with an unusable t (${RUNS} cases): malformed, never accepted`, async (t) => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 100 }), unusableT, (bytes, timestamp) => {
    const body = Buffer.from(bytes)
    const v1 = computeSignature(SECRETS[0]!, timestamp as unknown as number, body)
    const result = verifySignature(`t=${timestamp},v1=${v1}`, body, options)
    return !result.ok && (result.reason === 'malformed' || result.reason === 'missing')
  }), { numRuns: RUNS })
  t.pass()
})

t.test(`signed with a t outside the window, past or future, up to 15 digits (${RUNS} cases): stale`, async (t) => {
  const outside = fc.oneof(
    fc.integer({ min: 0, max: NOW - TOLERANCE - 1 }),
    fc.integer({ min: NOW + TOLERANCE + 1, max: Number.MAX_SAFE_INTEGER }).filter((n) => String(n).length <= 15)
  )
  fc.assert(fc.property(fc.uint8Array({ maxLength: 100 }), outside, (bytes, timestamp) => {
    const body = Buffer.from(bytes)
    const result = verifySignature(validGroup(timestamp, body), body, options)
    return !result.ok && result.reason === 'stale'
  }), { numRuns: RUNS })
  t.pass()
})

t.test(`the same valid group repeated n times (${RUNS} cases): accepted up to ${MAX_SIGNATURE_GROUPS}, malformed beyond`, async (t) => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 100 }), fc.integer({ min: 1, max: 40 }), (bytes, n) => {
    const body = Buffer.from(bytes)
    const result = verifySignature(Array.from({ length: n }, () => validGroup(NOW, body)).join(' '), body, options)
    return n <= MAX_SIGNATURE_GROUPS ? result.ok : !result.ok && result.reason === 'malformed'
  }), { numRuns: RUNS })
  t.pass()
})
