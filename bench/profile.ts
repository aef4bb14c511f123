// `npm run bench:profile -- [--role all|intake|worker] [--seconds N] [--rate N] [--baseline DIR] [--variants plain,filter,ordering,tracing,partitions<N>]
// [--redis single|cluster|cluster-replicas]`:
// CPU profile of a relay process under the bench's load, summarised as self time by package and by
// function, with its CPU cost per request next to the framework floor's. `--role worker` profiles
// a ROLE=worker process fed by an unprofiled ROLE=intake one; `--rate` sends at a fixed rate
// instead of autocannon's closed loop. `--baseline` names another checkout with a built dist/ (an
// earlier commit, say): both are measured in turns in this one run, and the ratio is reported,
// with the Redis memory each takes per event waiting for delivery. `--variants` measures this
// checkout with every subscriber plain, with a payload filter that lets every event through, with
// per-object ordering, with tracing on, and with INTAKE_PARTITIONS=N (`partitions16`, say), in turns in this one run: what each feature costs
// per event. `--redis` runs it all on a Redis Cluster of 3 primaries (and a replica each) instead of one node, as the cluster shape of
// `npm run bench` starts it (the Redis CPU and commands are then the primaries' sums). The before/after records in BENCHMARKS.md come from it.
import { readdirSync, readFileSync, mkdtempSync } from 'node:fs'
import { createServer } from 'node:http'
import { once } from 'node:events'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { argument } from './lib/args.js'
import { blast, paced } from './lib/load.js'
import { cpuMs, killAllNow, ROOT, startRelay, startTsServer, type Relay } from './lib/processes.js'
import { deliveredToAll, measureWaitingMemory, relayEnvFor, type Subscribers } from './lib/scenario.js'
import { startTopology, type BenchTopology, type TopologyKind } from './lib/topologies.js'

const role = argument('role', 'all')
const seconds = Number(argument('seconds', '10'))
const rate = Number(argument('rate', '0'))
const baseline = argument('baseline', '')
const variants = argument('variants', '').split(',').filter(Boolean)
const topologyKind = argument('redis', 'single') as TopologyKind

/**
 * What each variant adds to every subscriber's settings (the bench's events are all
 * `inquiry.approved`, each about its own inquiry), or to the relay's: `tracing` exports to an OTLP
 * sink in this process that reads and drops what it is sent.
 */
const VARIANTS: Record<string, { subscriber?: Record<string, string>; relay?: Record<string, string> }> = {
  plain: {},
  filter: { subscriber: { FILTER: JSON.stringify({ 'payload.data.attributes.status': 'approved', 'payload.data.attributes.reference-id': { $regex: '^user_' } }) } },
  ordering: { subscriber: { ORDERING: 'object' } },
  tracing: { relay: { OTEL_EXPORTER_OTLP_ENDPOINT: 'sink' } }
}

/** `partitions<N>`: INTAKE_PARTITIONS=N, under a prefix of its own (another count than the stored data's is refused at start). */
function variantOf(name: string): { subscriber?: Record<string, string>; relay?: Record<string, string> } | undefined {
  const partitions = /^partitions(\d+)$/.exec(name)?.[1]
  return partitions ? { relay: { INTAKE_PARTITIONS: partitions, REDIS_PREFIX: `bench-partitions${partitions}` } } : VARIANTS[name]
}

async function startOtlpSink(): Promise<string> {
  const server = createServer((request, response) => {
    request.resume()
    request.on('end', () => response.writeHead(200).end())
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  server.unref()
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`
}

interface ProfileNode { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }
interface CpuProfile { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] }

/** Where a frame lives: a dependency's package name, node's own internals, our module, or the VM. */
function owner(url: string): string {
  const dependency = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (dependency) return dependency[1]!
  if (url.startsWith('node:')) return 'node (core)'
  const ours = /\/dist\/(.+)$/.exec(url)
  if (ours) return `persona-relay ${ours[1]}`
  return url === '' ? '(vm: gc, native, idle)' : url
}

function summarise(profile: CpuProfile) {
  const selfMicros = new Map<number, number>()
  profile.samples.forEach((id, index) => selfMicros.set(id, (selfMicros.get(id) ?? 0) + (profile.timeDeltas[index] ?? 0)))
  const byOwner = new Map<string, number>()
  const byFunction = new Map<string, number>()
  let total = 0
  for (const node of profile.nodes) {
    const micros = selfMicros.get(node.id) ?? 0
    total += micros
    const { functionName, url, lineNumber } = node.callFrame
    const where = owner(url)
    byOwner.set(where, (byOwner.get(where) ?? 0) + micros)
    const key = `${functionName || '(anonymous)'} ${where}${url ? `:${lineNumber + 1}` : ''}`
    byFunction.set(key, (byFunction.get(key) ?? 0) + micros)
  }
  const top = (map: Map<string, number>, count: number) => [...map].sort((a, b) => b[1] - a[1]).slice(0, count)
    .map(([name, micros]) => `${(100 * micros / total).toFixed(1).padStart(5)} %  ${name}`)
  return `Self time by package:\n${top(byOwner, 15).join('\n')}\n\nSelf time by function:\n${top(byFunction, 30).join('\n')}\n`
}

/** Redis commands run so far on every primary, by name (commands run by scripts included), from INFO commandstats. */
async function commandCounts(clients: Redis[]): Promise<Map<string, number>> {
  const counts = new Map<string, number>()
  for (const client of clients) {
    for (const match of (await client.info('commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) counts.set(match[1]!, (counts.get(match[1]!) ?? 0) + Number(match[2]))
  }
  return counts
}

interface Measurement { rps: number; micros: number; microsPerDelivered: number; delivered: number; cpu: string; commands: string }

/** One run of the relay built in `root`: its CPU per request, per event delivered, and Redis commands. */
async function measure(
  root: string, redis: BenchTopology, subscribers: Subscribers, profileDir?: string, settings: { subscriber?: Record<string, string>; relay?: Record<string, string> } = {}
): Promise<Measurement> {
  const profiling = profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []
  const envOf = (relayRole: string) => {
    const env = { ...relayEnvFor(redis.env, subscribers, relayRole), ...settings.relay }
    for (const name of Object.keys(subscribers.ports)) for (const [key, value] of Object.entries(settings.subscriber ?? {})) env[`SUBSCRIBER_${name}_${key}`] = value
    return env
  }
  const relays: Relay[] = role === 'worker'
    ? [await startRelay(envOf('intake'), [], root), await startRelay(envOf('worker'), profiling, root)]
    : [await startRelay(envOf(role), profiling, root)]
  const intakeUrl = relays[0]!.baseUrl
  const measured = relays.at(-1)!
  // Warm up at the measured load, then let the warm-up's deliveries finish outside the window.
  await (rate > 0 ? paced(intakeUrl, rate, 2) : blast(intakeUrl, { seconds: 2 }))
  for (let last = -1, now = await deliveredToAll(subscribers); now !== last; last = now, now = await deliveredToAll(subscribers)) {
    await new Promise((resolve) => setTimeout(resolve, role === 'intake' ? 0 : 1000))
  }

  const stats = redis.primaryUrls.map((url) => new Redis(url))
  const redisPids = [...redis.pids.primaries, ...redis.pids.replicas]
  const pids = { relay: [measured.pid], redis: redisPids, subscribers: [], 'load generator': [process.pid] }
  const cpuOf = (list: number[]) => list.reduce((sum, pid) => sum + cpuMs(pid), 0)
  const cpuBefore = Object.fromEntries(Object.entries(pids).map(([name, list]) => [name, cpuOf(list)]))
  const deliveredBefore = await deliveredToAll(subscribers)
  const commandsBefore = await commandCounts(stats)
  const started = performance.now()
  const result = rate > 0
    ? await paced(intakeUrl, rate, seconds).then((sent) => ({ rps: sent.ok / sent.seconds, total: sent.sent }))
    : await blast(intakeUrl, { seconds })
  const wallMs = performance.now() - started
  const delivered = await deliveredToAll(subscribers) - deliveredBefore
  const commandsAfter = await commandCounts(stats)
  const relayCpuMs = cpuMs(measured.pid) - cpuBefore.relay!
  const cpu = Object.entries(pids).filter(([, list]) => list.length > 0)
    .map(([name, list]) => `${name} ${(100 * (cpuOf(list) - cpuBefore[name]!) / wallMs).toFixed(0)} %`).join(', ')
  const perEvent = [...commandsAfter].map(([name, calls]) => [name, (calls - (commandsBefore.get(name) ?? 0)) / result.total] as const)
    .filter(([, calls]) => calls >= 0.05).sort((a, b) => b[1] - a[1])
  const commands = `${perEvent.reduce((sum, [, calls]) => sum + calls, 0).toFixed(1)} ` +
    `(${perEvent.map(([name, calls]) => `${name} ${calls.toFixed(1)}`).join(', ')})`
  for (const relay of relays) await relay.stop()
  for (const client of stats) await client.quit().catch(() => undefined)
  return { rps: result.rps, micros: 1000 * relayCpuMs / result.total, microsPerDelivered: 1000 * relayCpuMs / Math.max(1, delivered), delivered, cpu, commands }
}

function describe(name: string, m: Measurement, floorRps: number): string {
  const perEvent = role === 'intake' ? '' : `, ${m.microsPerDelivered.toFixed(0)} µs per event delivered to all 3 (${m.delivered} delivered during the load)`
  return `${name}: ${m.rps.toFixed(0)} req/s (${(m.rps / floorRps).toFixed(2)}× the floor); ${m.micros.toFixed(0)} µs CPU per request${perEvent}\n` +
    `  CPU during the load (100 % = one core): ${m.cpu}\n  Redis commands per event sent: ${m.commands}\n`
}

const dir = mkdtempSync(join(tmpdir(), 'persona-relay-profile-'))
try {
  const redis = await startTopology(topologyKind, 'aof-everysec')
  const subscribers = await startTsServer<Subscribers>('subscribers.ts')
  // The floor's CPU per request is the yardstick: it is steadier than req/s on a shared machine.
  const floor = await startTsServer<{ ready: string }>('floor.ts')
  await blast(floor.ready.ready, { seconds: 2 })
  const floorCpuBefore = cpuMs(floor.pid)
  const floorLoad = await blast(floor.ready.ready, { seconds })
  const floorMicros = 1000 * (cpuMs(floor.pid) - floorCpuBefore) / floorLoad.total
  await floor.stop()
  const label = `ROLE=${role}${rate > 0 ? ` paced at ${rate}/s` : ''}${topologyKind === 'single' ? '' : ` on ${topologyKind}`}`
  process.stdout.write(`floor: ${floorLoad.rps.toFixed(0)} req/s, ${floorMicros.toFixed(0)} µs CPU per request\n`)

  if (variants.length > 0) {
    const runs = new Map<string, Measurement[]>(variants.map((variant) => [variant, []]))
    for (let round = 1; round <= 2; round++) {
      for (const variant of variants) {
        const settings = variantOf(variant)
        if (!settings) throw new Error(`unknown variant ${variant}: ${Object.keys(VARIANTS).join(', ')}, partitions<N>`)
        if (settings.relay?.OTEL_EXPORTER_OTLP_ENDPOINT === 'sink') settings.relay.OTEL_EXPORTER_OTLP_ENDPOINT = await startOtlpSink()
        runs.get(variant)!.push(await measure(ROOT, redis, subscribers.ready, undefined, settings))
        process.stdout.write(describe(`${variant} ${label}, round ${round}`, runs.get(variant)!.at(-1)!, floorLoad.rps))
      }
    }
    const mean = (values: number[]) => values.reduce((sum, value) => sum + value, 0) / values.length
    const key = role === 'intake' || rate === 0 ? 'micros' : 'microsPerDelivered'
    const plain = mean((runs.get(variants[0]!) ?? []).map((run) => run[key]))
    process.stdout.write(`\n| ${label} | CPU per ${key === 'micros' ? 'request' : 'event delivered to three'} | × ${variants[0]} | Redis commands per event |\n|---|---|---|---|\n`)
    for (const [variant, measured] of runs) {
      const micros = mean(measured.map((run) => run[key]))
      process.stdout.write(`| ${variant} | ${micros.toFixed(0)} µs | ${(micros / plain).toFixed(2)}× | ${measured.at(-1)!.commands} |\n`)
    }
  } else if (baseline) {
    // In turns, so that whatever else the machine does weighs on both alike.
    const runs: { before: Measurement[]; after: Measurement[] } = { before: [], after: [] }
    for (let round = 1; round <= 2; round++) {
      runs.before.push(await measure(baseline, redis, subscribers.ready))
      process.stdout.write(describe(`baseline ${label}, round ${round}`, runs.before.at(-1)!, floorLoad.rps))
      runs.after.push(await measure(ROOT, redis, subscribers.ready))
      process.stdout.write(describe(`this checkout ${label}, round ${round}`, runs.after.at(-1)!, floorLoad.rps))
    }
    const mean = (values: number[]) => values.reduce((sum, value) => sum + value, 0) / values.length
    if (topologyKind === 'single') {
      const single = { url: redis.env.REDIS_URL! }
      const memory = [await measureWaitingMemory(single, subscribers.ready, 2000, baseline), await measureWaitingMemory(single, subscribers.ready, 2000)]
      process.stdout.write(`Redis memory per event waiting for delivery to 3 subscribers: baseline ${memory[0]!.toFixed(0)} B, this checkout ${memory[1]!.toFixed(0)} B\n`)
    }
    const key = role === 'intake' || rate === 0 ? 'micros' : 'microsPerDelivered'
    const [before, after] = [mean(runs.before.map((run) => run[key])), mean(runs.after.map((run) => run[key]))]
    process.stdout.write(`\nCPU per ${key === 'micros' ? 'request' : 'delivered event'}: baseline ${before.toFixed(0)} µs, this checkout ` +
      `${after.toFixed(0)} µs (${(before / after).toFixed(2)}× as efficient); req/s ${mean(runs.before.map((run) => run.rps)).toFixed(0)} → ` +
      `${mean(runs.after.map((run) => run.rps)).toFixed(0)}\n`)
  } else {
    const result = await measure(ROOT, redis, subscribers.ready, dir)
    const file = readdirSync(dir).find((name) => name.endsWith('.cpuprofile'))
    if (!file) throw new Error('the relay wrote no profile')
    process.stdout.write(`${describe(label, result, floorLoad.rps)}profile ${join(dir, file)}\n\n` +
      summarise(JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile))
  }
  await subscribers.stop()
  await redis.stop()
} catch (error) {
  process.stderr.write(`profile failed: ${error instanceof Error ? error.stack : String(error)}\n`)
  process.exitCode = 1
} finally {
  killAllNow()
}
