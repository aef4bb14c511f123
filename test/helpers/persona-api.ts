import { createServer, type IncomingHttpHeaders } from 'node:http'
import { once } from 'node:events'

export const API_KEY = 'persona_sandbox_0123456789abcdefghij'

/** One item of the Events API list: a webhook body's `data`. */
export function apiEvent(id: string, createdAt: Date, name = 'inquiry.approved'): Record<string, unknown> {
  return {
    type: 'event',
    id,
    attributes: {
      name,
      payload: { data: { type: 'inquiry', id: `inq_${id.slice(4)}`, attributes: { status: 'approved', 'name-first': 'Zoë' } } },
      'created-at': createdAt.toISOString()
    }
  }
}

export interface ApiRequest {
  url: URL
  headers: IncomingHttpHeaders
  at: number
}

export type ApiAnswer = { status: number; headers?: Record<string, string>; body?: string; delayMs?: number }

export interface FakePersonaApiOptions {
  /** Newest first, as Persona lists them. */
  items?: unknown[]
  /** false: no `links` in answers, so the client must page with page[after] itself. */
  links?: boolean
  /** How long every list answer takes. */
  delayMs?: number
  /** Answers the n-th request (1-based) instead of the list when it returns something. */
  answer?: (n: number, url: URL) => ApiAnswer | undefined
}

export interface FakePersonaApi {
  baseUrl: string
  items: unknown[]
  requests: ApiRequest[]
  /** The most requests it was answering at the same time. */
  maxInFlight(): number
  close(): Promise<void>
}

/**
 * A local server that behaves like Persona's documented `GET /api/v1/events`: Bearer key, newest
 * first, `page[size]` up to 100 (default 10), `page[after]` cursor and `links.next`.
 */
export async function startPersonaApi(options: FakePersonaApiOptions = {}): Promise<FakePersonaApi> {
  const items = options.items ?? []
  const requests: ApiRequest[] = []
  let inFlight = 0
  let maxInFlight = 0
  const server = createServer(async (req, res) => {
    inFlight += 1
    maxInFlight = Math.max(maxInFlight, inFlight)
    res.on('close', () => {
      inFlight -= 1
    })
    req.resume()
    await once(req, 'end')
    const url = new URL(req.url ?? '/', 'http://localhost')
    requests.push({ url, headers: req.headers, at: Date.now() })
    const send = (answer: ApiAnswer) => {
      const reply = () => res.writeHead(answer.status, { 'content-type': 'application/json', ...answer.headers }).end(answer.body ?? '')
      if (answer.delayMs) setTimeout(reply, answer.delayMs)
      else reply()
    }
    const special = options.answer?.(requests.length, url)
    if (special) return send(special)
    if (req.method !== 'GET' || url.pathname !== '/api/v1/events') return send({ status: 404, body: '{"errors":[{"title":"Not found"}]}' })
    if (req.headers.authorization !== `Bearer ${API_KEY}`) {
      return send({ status: 401, body: '{"errors":[{"title":"Must be authenticated to access this endpoint"}]}' })
    }
    const size = Number(url.searchParams.get('page[size]') ?? '10')
    if (!Number.isInteger(size) || size < 1 || size > 100) return send({ status: 400, body: '{"errors":[{"title":"Bad page size"}]}' })
    const after = url.searchParams.get('page[after]')
    const start = after === null ? 0 : items.findIndex((item) => (item as { id: string }).id === after) + 1
    const data = items.slice(start, start + size)
    const last = (data.at(-1) as { id: string } | undefined)?.id
    const links = { prev: null, next: last ? `/api/v1/events?page%5Bafter%5D=${last}&page%5Bsize%5D=${size}` : null }
    send({ status: 200, body: JSON.stringify({ data, ...(options.links === false ? {} : { links }) }), delayMs: options.delayMs })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    items,
    requests,
    maxInFlight: () => maxInFlight,
    async close() {
      server.closeAllConnections()
      server.close()
      await once(server, 'close')
    }
  }
}
