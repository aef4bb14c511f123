import { createHmac, timingSafeEqual } from 'node:crypto'

/** One `t=…,v1=…` group of a `Persona-Signature` header. */
export interface SignatureGroup {
  timestamp: number
  signatures: string[]
}

export type VerificationFailure = 'missing' | 'malformed' | 'mismatch' | 'stale'

export type VerificationResult =
  | { ok: true; timestamp: number }
  | { ok: false; reason: VerificationFailure }

export interface VerifyOptions {
  secrets: readonly string[]
  toleranceSeconds: number
  nowSeconds: number
}

/**
 * Bounds the HMAC work an unauthenticated request can cause: rotation needs two groups, so a
 * header with more than a handful is not Persona's.
 */
export const MAX_SIGNATURE_GROUPS = 8
const MAX_HEADER_LENGTH = 4096
const TIMESTAMP = /^\d{1,15}$/
const HEX_SHA256 = /^[0-9a-f]{64}$/

/**
 * Splits the header as Persona sends it, two groups while a secret rotates (`t=…,v1=… t=…,v1=…`):
 * groups on whitespace, pairs on `,`, key and value on the first `=`; unknown keys are ignored.
 * Returns undefined when no usable group is left.
 */
export function parseSignatureHeader(header: string): SignatureGroup[] | undefined {
  if (header.length > MAX_HEADER_LENGTH) return undefined
  const groups: SignatureGroup[] = []
  for (const text of header.split(/\s+/)) {
    if (text === '') continue
    let timestamp: number | undefined
    const signatures: string[] = []
    for (const pair of text.split(',')) {
      const separator = pair.indexOf('=')
      if (separator < 0) continue
      const key = pair.slice(0, separator)
      const value = pair.slice(separator + 1)
      if (key === 't' && TIMESTAMP.test(value)) timestamp = Number(value)
      else if (key === 'v1' && value !== '') signatures.push(value.toLowerCase())
    }
    if (timestamp !== undefined && signatures.length > 0) groups.push({ timestamp, signatures })
  }
  if (groups.length === 0 || groups.length > MAX_SIGNATURE_GROUPS) return undefined
  return groups
}

/** `hex(HMAC-SHA256(secret, "<t>.<raw body>"))`, Persona's `v1`. */
export function computeSignature(secret: string, timestamp: number, body: Buffer): string {
  return createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest('hex')
}

/** Builds a `Persona-Signature` header value, one group per secret, as Persona does during rotation. */
export function signatureHeader(secrets: readonly string[], timestamp: number, body: Buffer): string {
  return secrets.map((secret) => `t=${timestamp},v1=${computeSignature(secret, timestamp, body)}`).join(' ')
}

/**
 * Accepts when any group's `v1` matches under any secret with that group's own `t`, and that `t`
 * is within the tolerance of now, in either direction. Only groups inside the window are hashed,
 * so a header of stale groups costs an unauthenticated sender no HMAC work at all. When no group
 * inside the window matches and the header has a group outside it, the answer is `stale`: only a
 * stale group could have matched, which tells a replay or a skewed clock from a wrong secret.
 */
export function verifySignature(
  header: string | undefined,
  body: Buffer,
  options: VerifyOptions
): VerificationResult {
  if (header === undefined || header.trim() === '') return { ok: false, reason: 'missing' }
  const groups = parseSignatureHeader(header)
  if (!groups) return { ok: false, reason: 'malformed' }

  const fresh = groups.filter((group) => Math.abs(options.nowSeconds - group.timestamp) <= options.toleranceSeconds)
  const expectedByTimestamp = new Map<number, Buffer[]>()
  for (const group of fresh) {
    let expected = expectedByTimestamp.get(group.timestamp)
    if (!expected) {
      expected = options.secrets.map((secret) => Buffer.from(computeSignature(secret, group.timestamp, body)))
      expectedByTimestamp.set(group.timestamp, expected)
    }
    if (group.signatures.some((signature) => matchesAny(signature, expected))) return { ok: true, timestamp: group.timestamp }
  }
  return { ok: false, reason: fresh.length < groups.length ? 'stale' : 'mismatch' }
}

function matchesAny(candidate: string, expected: Buffer[]): boolean {
  // A wrong length says nothing about the secret, so it may end the comparison early; equal
  // lengths go through timingSafeEqual, which would throw on unequal ones.
  if (!HEX_SHA256.test(candidate)) return false
  const candidateBytes = Buffer.from(candidate)
  let matched = false
  for (const bytes of expected) matched = timingSafeEqual(candidateBytes, bytes) || matched
  return matched
}
