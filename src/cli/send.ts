import { parseArgs } from 'node:util'
import { request } from 'undici'
import { signatureHeader } from '../persona/signature.js'
import { personaId, sampleEvent } from '../persona/sample-event.js'
import { positiveInteger, readInputFile, requireList, requireValue, UsageError, type Output } from './args.js'

export const SEND_USAGE = `persona-relay send <event-name|file.json> --url <intake URL> [--secret <wbhsec_…[,…]>] [--count N] [--duplicate]

Builds a realistic Persona webhook for the event name (or reads the body from a .json file), signs it
exactly like Persona (Persona-Signature: t=<now>,v1=<hmac>; one group per secret, as during rotation)
and posts it. --count sends N events (a file's event id is replaced by a fresh one for each after the
first); --duplicate sends every event twice, to see de-duplication. The secret defaults to
PERSONA_WEBHOOK_SECRET.`

/** Returns the number of requests that did not get a 2xx, for the exit code. */
export async function send(argv: string[], env: NodeJS.ProcessEnv, output: Output): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      url: { type: 'string' },
      secret: { type: 'string' },
      count: { type: 'string' },
      duplicate: { type: 'boolean', default: false }
    }
  })
  const source = requireValue(positionals[0], 'an event name or a .json file')
  const url = requireValue(values.url, '--url')
  const secrets = requireList(values.secret ?? env.PERSONA_WEBHOOK_SECRET, '--secret (or PERSONA_WEBHOOK_SECRET)')
  const count = positiveInteger(values.count, '--count', 1)
  const file = source.endsWith('.json') ? await readInputFile(source) : undefined
  // Checked before the first request: a mistake should not leave half of the events sent.
  const freshCopy = file && count > 1 ? copyWithFreshId(file) : undefined

  let failures = 0
  for (let index = 0; index < count; index += 1) {
    const body = file ? (index === 0 ? file : freshCopy!()) : Buffer.from(sampleEvent(source).body)
    for (let copy = 0; copy < (values.duplicate ? 2 : 1); copy += 1) {
      const timestamp = Math.floor(Date.now() / 1000)
      const response = await request(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json; charset=utf-8',
          'persona-signature': signatureHeader(secrets, timestamp, body),
          'persona-webhook-attempts-made': String(copy + 1),
          'persona-webhook-attempts-left': String(7 - copy),
          'persona-webhook-first-attempted-at': String(timestamp)
        },
        body
      }).catch((error: Error & { code?: string }) => {
        output.err(`could not reach ${url}: ${error.code ?? error.message}`)
        return undefined
      })
      if (!response) {
        failures += 1
        continue
      }
      const text = await response.body.text()
      if (response.statusCode < 200 || response.statusCode >= 300) failures += 1
      output.out(`${response.statusCode} ${text}`)
    }
  }
  return failures
}

/**
 * The first event is the file's own bytes; this makes the later ones, each with a fresh id so that
 * they are new events and otherwise the same text.
 */
function copyWithFreshId(file: Buffer): () => Buffer {
  const text = file.toString('utf8')
  let envelope: { data?: { id?: unknown } }
  try {
    envelope = JSON.parse(text) as typeof envelope
  } catch {
    throw new UsageError('the file is not JSON, so --count cannot give its copies fresh ids')
  }
  const id = envelope.data?.id
  if (typeof id !== 'string') throw new UsageError('the file has no data.id to replace')
  // An id written with JSON escapes is not in the text as such: every copy would be a duplicate.
  if (!text.includes(`"${id}"`)) throw new UsageError('the file\'s data.id is written with escapes, so --count cannot replace it')
  return () => Buffer.from(text.replace(`"${id}"`, `"${personaId('evt')}"`))
}
