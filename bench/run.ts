// `npm run bench [-- --quick]`: see BENCHMARKS.md for what it measures and how to read it.
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { argument } from './lib/args.js'
import { measureClusterShape, type ClusterSettings, type ClusterShapeResult } from './lib/cluster.js'
import { clusterSections, spliceClusterSections } from './lib/cluster-report.js'
import { blast, type LoadResult } from './lib/load.js'
import { killAllNow, ROOT, startRedis, startTsServer, type Persistence } from './lib/processes.js'
import { measureCosts, measureShape, measureWaitingMemory, type Settings, type Shape, type Subscribers } from './lib/scenario.js'
import { INTERPRETATION, renderReport, reproduceSection, type ModeResult } from './lib/report.js'

const quick = process.argv.includes('--quick')
const settings: Settings = quick
  ? { quick, warmupSeconds: 1, intakeSeconds: 3, latencySeconds: 3, verifySeconds: 0, memoryEvents: 2000, drainDeadlineMs: 20_000, latencyRate: 1000 }
  : { quick, warmupSeconds: 3, intakeSeconds: 15, latencySeconds: 15, verifySeconds: 10, memoryEvents: 10_000, drainDeadlineMs: 90_000, latencyRate: 1000 }
const persistenceModes: Persistence[] = quick ? ['aof-everysec'] : ['aof-everysec', 'none']
const shapes: Shape[] = quick ? ['all'] : ['all', 'split']
// `--shape cluster`: only the cluster shape (one node against a cluster, and REDIS_WAIT_REPLICAS), which a full run ends with.
const clusterOnly = argument('shape', '') === 'cluster'
if (process.argv.includes('--shape') && !clusterOnly) {
  process.stderr.write('usage: npm run bench [-- --quick] [-- --shape cluster]\n')
  process.exit(2)
}
const clusterSettings: ClusterSettings = quick
  ? { rounds: 1, topologies: ['single', 'cluster-replicas'], persistence: 'aof-everysec', warmupSeconds: 1, intakeSeconds: 2, drainDeadlineMs: 20_000,
      wait: { rounds: 1, rates: [200], pacedSeconds: 2, closedLoopSeconds: 2 } }
  // As many rounds as sides, so that the rotation puts every side in every position once: a machine that speeds up or slows
  // down during the run weighs on all sides alike.
  : { rounds: 4, topologies: ['single', 'single-partitioned', 'cluster', 'cluster-replicas'], persistence: 'aof-everysec', warmupSeconds: 2, intakeSeconds: 8, drainDeadlineMs: 90_000,
      wait: { rounds: 4, rates: [200, 500], pacedSeconds: 10, closedLoopSeconds: 8 } }

const log = (text: string) => process.stdout.write(`${text}\n`)
const startedAt = Date.now()

async function runMode(persistence: Persistence): Promise<ModeResult> {
  log(`Redis persistence: ${persistence}`)
  const redis = await startRedis(persistence)
  const subscribers = await startTsServer<Subscribers>('subscribers.ts')
  const floor = await startTsServer<{ ready: string }>('floor.ts')
  const client = new Redis(redis.url)
  try {
    await blast(floor.ready.ready, { seconds: settings.warmupSeconds })
    log(`  floor: ${settings.intakeSeconds}s at 50 connections`)
    const floorResult: LoadResult = await blast(floor.ready.ready, { seconds: settings.intakeSeconds })
    log(`  floor: ${floorResult.rps.toFixed(0)} req/s`)
    await floor.stop()
    const shapeResults = []
    for (const shape of shapes) {
      await client.flushall()
      shapeResults.push(await measureShape(shape, redis, subscribers.ready, settings, log))
    }
    await client.flushall()
    const costs = { ...await measureCosts(redis, subscribers.ready, settings),
      bytesPerWaitingEvent: await measureWaitingMemory(redis, subscribers.ready, settings.memoryEvents) }
    log(`  memory: ${costs.bytesPerQueuedEvent.toFixed(0)} B per event in the intake stream, ${costs.bytesPerWaitingEvent.toFixed(0)} B per event waiting for delivery to 3`)
    const redisVersion = /redis_version:(\S+)/.exec(await client.info('server'))?.[1] ?? 'unknown'
    return { persistence, redisVersion, floor: floorResult, shapes: shapeResults, costs }
  } finally {
    client.disconnect()
    await floor.stop()
    await subscribers.stop()
    await redis.stop()
  }
}

async function runClusterShape(): Promise<ClusterShapeResult> {
  log('Cluster shape: one node against a 3-primary cluster, then REDIS_WAIT_REPLICAS=0 against 1')
  const subscribers = await startTsServer<Subscribers>('subscribers.ts')
  try {
    return await measureClusterShape(subscribers.ready, subscribers.pid, clusterSettings, log)
  } finally {
    await subscribers.stop()
  }
}

async function runAll(previous: string): Promise<string> {
  const modes: ModeResult[] = []
  for (const persistence of persistenceModes) modes.push(await runMode(persistence))
  const machine = {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryGiB: totalmem() / 2 ** 30,
    node: process.version
  }
  const cluster = await runClusterShape()
  return renderReport({ quick, machine, modes, settings, wallSeconds: (Date.now() - startedAt) / 1000, previous, cluster })
}

try {
  const out = join(ROOT, 'BENCHMARKS.md')
  const previous = existsSync(out) ? readFileSync(out, 'utf8') : ''
  // `--shape cluster` rewrites only its own sections of the file; a full run all of it but the interpretation.
  const sections = clusterOnly ? clusterSections(await runClusterShape(), true) : undefined
  const report = sections ? spliceClusterSections(previous, sections, reproduceSection(), INTERPRETATION) : await runAll(previous)
  // Quick numbers are for development only: they are printed, never written over the full run's.
  if (!quick) writeFileSync(out, report)
  log(`\n${sections ? sections.join('\n') : report}\n${quick ? 'Quick mode: not written' : `Written to ${out}`}; ${((Date.now() - startedAt) / 1000).toFixed(0)} s`)
} catch (error) {
  process.stderr.write(`bench failed: ${error instanceof Error ? error.stack : String(error)}\n`)
  process.exitCode = 1
} finally {
  killAllNow()
}
