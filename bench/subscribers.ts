// Three subscriber servers and a control server in one process, away from the load generator's CPU.
// Each subscriber answers 200 at once and records, per event, receive time − `bench-sent-at`.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { once } from 'node:events'
import { nowMs } from './lib/events.js'

const NAMES = ['S1', 'S2', 'S3'] as const
const SENT_AT = /"bench-sent-at": *(\d+(?:\.\d+)?)/
const ID = /"id":"(evt_[A-Za-z0-9]+)"/

interface Tally { ids: Set<string>; deliveries: number; latencies: number[]; lastAt: number }
const tallies = new Map<string, Tally>(NAMES.map((name) => [name, fresh()]))

function fresh(): Tally {
  return { ids: new Set(), deliveries: 0, latencies: [], lastAt: 0 }
}

function receive(name: string, request: IncomingMessage, response: ServerResponse) {
  const chunks: Buffer[] = []
  request.on('data', (chunk: Buffer) => chunks.push(chunk))
  request.on('end', () => {
    const at = nowMs()
    const body = Buffer.concat(chunks).toString()
    const tally = tallies.get(name)!
    tally.deliveries += 1
    tally.lastAt = at
    const id = ID.exec(body)?.[1]
    const sentAt = Number(SENT_AT.exec(body)?.[1] ?? 0)
    if (id && !tally.ids.has(id)) {
      tally.ids.add(id)
      if (sentAt > 0) tally.latencies.push(at - sentAt)
    }
    response.writeHead(200).end()
  })
}

function summary(tally: Tally) {
  const sorted = Float64Array.from(tally.latencies).sort()
  const at = (q: number) => sorted.length === 0 ? null : sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!
  return { unique: tally.ids.size, deliveries: tally.deliveries, lastAt: tally.lastAt, latencies: sorted.length,
    p50: at(0.5), p99: at(0.99), max: at(1) }
}

const ports: Record<string, number> = {}
for (const name of NAMES) {
  const server = createServer((request, response) => receive(name, request, response))
  server.keepAliveTimeout = 30_000
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  ports[name] = (server.address() as { port: number }).port
}

const control = createServer((request, response) => {
  if (request.url === '/reset') for (const name of NAMES) tallies.set(name, fresh())
  if (request.url === '/counts') {
    const counts = Object.fromEntries(NAMES.map((name) => { const t = tallies.get(name)!; return [name, { unique: t.ids.size, lastAt: t.lastAt }] }))
    response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(counts))
    return
  }
  const all: number[] = []
  for (const tally of tallies.values()) all.push(...tally.latencies)
  const combined = summary({ ids: new Set(), deliveries: 0, latencies: all, lastAt: 0 })
  const body = { subscribers: Object.fromEntries(NAMES.map((name) => [name, summary(tallies.get(name)!)])),
    latency: { count: combined.latencies, p50: combined.p50, p99: combined.p99, max: combined.max } }
  response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body))
})
control.listen(0, '127.0.0.1')
await once(control, 'listening')
process.stdout.write(`${JSON.stringify({ ready: true, ports, control: (control.address() as { port: number }).port })}\n`)
process.on('SIGTERM', () => process.exit(0))
