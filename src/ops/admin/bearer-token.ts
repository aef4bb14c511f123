import { createHash, timingSafeEqual } from 'node:crypto'

/**
 * Compares an `Authorization: Bearer …` header with the configured token in constant time. Both
 * sides are hashed first so that the comparison has equal lengths whatever the caller sent.
 */
export function bearerTokenMatches(header: string | undefined, token: string): boolean {
  if (!header) return false
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header)
  const presented = createHash('sha256').update(match?.[1] ?? '').digest()
  const expected = createHash('sha256').update(token).digest()
  return timingSafeEqual(presented, expected) && match !== null
}
