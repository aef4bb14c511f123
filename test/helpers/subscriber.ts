import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http'
import { once } from 'node:events'

export interface ReceivedRequest {
  method: string
  url: string
  headers: IncomingHttpHeaders
  body: Buffer
  at: number
}

/** What the subscriber does with the n-th request (1-based): answer, answer late, or drop the socket. */
export type Behaviour = (request: ReceivedRequest, n: number) => { status: number; body?: string; delayMs?: number } | 'reset'

export interface TestSubscriber {
  url: string
  received: ReceivedRequest[]
  waitFor(count: number, timeoutMs?: number): Promise<ReceivedRequest[]>
  close(): Promise<void>
}

/** A real HTTP server on a free port that records every request it gets. */
export async function startSubscriber(behaviour: Behaviour = () => ({ status: 200 }), path = '/hook'): Promise<TestSubscriber> {
  const received: ReceivedRequest[] = []
  const waiters: (() => void)[] = []
  const server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    const request = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks), at: Date.now() }
    received.push(request)
    for (const wake of waiters.splice(0)) wake()
    const answer = behaviour(request, received.length)
    if (answer === 'reset') {
      req.socket.destroy()
      return
    }
    if (answer.delayMs) await new Promise((resolve) => setTimeout(resolve, answer.delayMs))
    if (res.destroyed) return
    res.writeHead(answer.status, { 'content-type': 'text/plain' }).end(answer.body ?? '')
  })
  server.keepAliveTimeout = 1000
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }

  return {
    url: `http://127.0.0.1:${port}${path}`,
    received,
    async waitFor(count, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs
      while (received.length < count) {
        const left = deadline - Date.now()
        if (left <= 0) throw new Error(`subscriber got ${received.length} requests, expected ${count} within ${timeoutMs} ms`)
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left)
          waiters.push(() => {
            clearTimeout(timer)
            resolve()
          })
        })
      }
      return received
    },
    async close() {
      server.closeAllConnections()
      server.close()
      await once(server, 'close')
    }
  }
}
