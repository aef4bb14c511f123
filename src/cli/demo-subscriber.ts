import { createServer, type Server } from 'node:http'
import { timingSafeEqual } from 'node:crypto'
import { once } from 'node:events'
import { parseArgs } from 'node:util'
import { splitList } from '../config/index.js'
import { standardWebhookSignature } from '../delivery/outbound-signature.js'
import { positiveInteger, type Output } from './args.js'

export const DEMO_SUBSCRIBER_USAGE = `persona-relay demo-subscriber [--port 4000] [--host 0.0.0.0] [--secret <whsec_…[,…]>]

A small subscriber for trying the relay out: it checks our Standard Webhooks signature (secret from
--secret or DEMO_SUBSCRIBER_SECRET), logs each event id and answers 204, or 401 when the signature
does not verify.`

const TOLERANCE_SECONDS = 300

/** Whether any `v1,<base64>` in the header is ours under any of the secrets, within five minutes. */
export function verifyStandardWebhook(
  headers: Record<string, string | string[] | undefined>,
  body: Buffer,
  secrets: readonly string[],
  nowSeconds = Math.floor(Date.now() / 1000)
): boolean {
  const id = headers['webhook-id']
  const timestamp = Number(headers['webhook-timestamp'])
  const signatures = String(headers['webhook-signature'] ?? '').split(' ')
  if (typeof id !== 'string' || !Number.isInteger(timestamp) || Math.abs(nowSeconds - timestamp) > TOLERANCE_SECONDS) return false
  return secrets.some((secret) => {
    const expected = Buffer.from(standardWebhookSignature([secret], id, timestamp, body))
    return signatures.some((candidate) => candidate.length === expected.length && timingSafeEqual(Buffer.from(candidate), expected))
  })
}

export async function demoSubscriber(argv: string[], env: NodeJS.ProcessEnv, output: Output): Promise<Server> {
  const { values } = parseArgs({
    args: argv,
    options: { port: { type: 'string' }, host: { type: 'string' }, secret: { type: 'string' } }
  })
  const port = positiveInteger(values.port, '--port', 4000)
  const secrets = splitList(values.secret ?? env.DEMO_SUBSCRIBER_SECRET ?? '')
  const server = createServer(async (request, response) => {
    const chunks: Buffer[] = []
    try {
      for await (const chunk of request) chunks.push(chunk as Buffer)
    } catch {
      // The sender went away mid-body (an aborted attempt): nothing to log, and no crash.
      response.destroy()
      return
    }
    const body = Buffer.concat(chunks)
    const signed = secrets.length === 0 ? 'not checked (no secret)' : verifyStandardWebhook(request.headers, body, secrets) ? 'valid' : 'INVALID'
    output.out(JSON.stringify({
      eventId: request.headers['webhook-id'],
      eventName: request.headers['persona-event-name'],
      attempt: request.headers['persona-relay-attempt'],
      signature: signed,
      bytes: body.length
    }))
    response.writeHead(signed === 'INVALID' ? 401 : 204).end()
  })
  server.listen(port, values.host ?? '0.0.0.0')
  await once(server, 'listening')
  output.out(`demo subscriber listening on ${values.host ?? '0.0.0.0'}:${port}`)
  return server
}

/**
 * In a container the demo is PID 1, which the kernel gives no default SIGTERM action: without a
 * handler `docker compose down` waits out its grace period and kills it.
 */
export function stopOnSignals(server: Server, output: Output): void {
  const stop = (signal: NodeJS.Signals) => {
    output.out(`demo subscriber stopping (${signal})`)
    server.closeAllConnections()
    server.close(() => process.exit(0))
  }
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
}
