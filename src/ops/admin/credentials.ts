import { createHash, timingSafeEqual } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'

/** Sent with every admin 401, so that a browser asks for the token and keeps it for /admin/*. */
export const BASIC_CHALLENGE = 'Basic realm="persona-relay", charset="UTF-8"'

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

const BASIC = /^Basic\s+(\S+)$/i

/**
 * The credentials an operator may send: the Bearer token (scripts), or HTTP Basic with the token as
 * the password and any user name (a browser: the console and the dashboard).
 */
export function adminAuthorized(header: string | undefined, token: string): boolean {
  const basic = BASIC.exec(header ?? '')
  if (!basic) return bearerTokenMatches(header, token)
  const decoded = Buffer.from(basic[1]!, 'base64').toString('utf8')
  const password = decoded.slice(decoded.indexOf(':') + 1)
  return bearerTokenMatches(`Bearer ${password}`, token)
}

const READS = new Set(['GET', 'HEAD'])

/**
 * A change that another site's page could have made in the operator's name. A browser adds Basic
 * credentials by itself, also to a form that another site posts here; such a form can only be
 * urlencoded, multipart or text/plain, and a script elsewhere that sends JSON must first pass a
 * CORS preflight, which the relay never grants. So a change signed with Basic must be JSON. A
 * Bearer token is never added by a browser: whoever sends one wrote the request.
 */
export function forgeable(request: { method: string; headers: IncomingHttpHeaders }): boolean {
  if (READS.has(request.method) || !BASIC.test(request.headers.authorization ?? '')) return false
  const mediaType = request.headers['content-type']?.split(';', 1)[0]!.trim().toLowerCase()
  return mediaType !== 'application/json'
}
