import type { preHandlerHookHandler } from 'fastify'
import type { Config } from '../config/index.js'
import { Errors } from '../errors.js'
import { verifySignature, type VerificationFailure } from '../persona/signature.js'

const EMPTY_BODY = Buffer.alloc(0)

const FAILURES: Record<VerificationFailure, new () => Error> = {
  missing: Errors.SIGNATURE_MISSING,
  malformed: Errors.SIGNATURE_MALFORMED,
  mismatch: Errors.SIGNATURE_MISMATCH,
  stale: Errors.SIGNATURE_STALE
}

/**
 * The header to verify. The split form (`X-Persona-Signature` + `X-Persona-Timestamp`) is not
 * Persona's protocol, but some guides and proxies produce it; it is accepted only when enabled.
 */
export function signatureHeaderOf(
  headers: Record<string, string | string[] | undefined>,
  acceptSplitHeaders: boolean
): string | undefined {
  const header = single(headers['persona-signature'])
  if (header !== undefined || !acceptSplitHeaders) return header
  const signature = single(headers['x-persona-signature'])
  const timestamp = single(headers['x-persona-timestamp'])
  if (signature === undefined && timestamp === undefined) return undefined
  return `t=${timestamp ?? ''},v1=${signature ?? ''}`
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(' ') : value
}

/** Checks the raw bytes against every configured secret before anything in the body is trusted. */
export function verifyPersonaSignature(persona: Config['persona']): preHandlerHookHandler {
  return async (request) => {
    const result = verifySignature(
      signatureHeaderOf(request.headers, persona.acceptSplitHeaders),
      Buffer.isBuffer(request.rawBody) ? request.rawBody : EMPTY_BODY,
      { secrets: persona.secrets, toleranceSeconds: persona.toleranceSeconds, nowSeconds: Math.floor(Date.now() / 1000) }
    )
    if (!result.ok) throw new FAILURES[result.reason]()
  }
}
