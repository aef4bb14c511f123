// `npm run bench [-- --quick]`: see BENCHMARKS.md for what it measures and how to read it.
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { blast, type LoadResult } from './lib/load.js'
import { killAllNow, ROOT, startRedis, startTsServer, type Persistence } from './lib/processes.js'
import { measureCosts, measureShape, measureWaitingMemory, type Settings, type Shape, type Subscribers } from './lib/scenario.js'
import { renderReport, type ModeResult } from './lib/report.js'

const quick = process.argv.includes('--quick')
const settings: Settings = quick
  ? { quick, warmupSeconds: 1, intakeSeconds: 3, latencySeconds: 3, verifySeconds: 0, memoryEvents: 2000, drainDeadlineMs: 20_000, latencyRate: 1000 }
  : { quick, warmupSeconds: 3, intakeSeconds: 15, latencySeconds: 15, verifySeconds: 10, memoryEvents: 10_000, drainDeadlineMs: 90_000, latencyRate: 1000 }
const persistenceModes: Persistence[] = quick ? ['aof-everysec'] : ['aof-everysec', 'none']
const shapes: Shape[] = quick ? ['all'] : ['all', 'split']

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

try {
  const modes: ModeResult[] = []
  for (const persistence of persistenceModes) modes.push(await runMode(persistence))
  const machine = {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryGiB: totalmem() / 2 ** 30,
    node: process.version
  }
  const out = join(ROOT, 'BENCHMARKS.md')
  const previous = existsSync(out) ? readFileSync(out, 'utf8') : ''
  const report = renderReport({ quick, machine, modes, settings, wallSeconds: (Date.now() - startedAt) / 1000, previous })
  // Quick numbers are for development only: they are printed, never written over the full run's.
  if (!quick) writeFileSync(out, report)
  log(`\n${report}\n${quick ? 'Quick mode: not written' : `Written to ${out}`}; ${((Date.now() - startedAt) / 1000).toFixed(0)} s`)
} catch (error) {
  process.stderr.write(`bench failed: ${error instanceof Error ? error.stack : String(error)}\n`)
  process.exitCode = 1
} finally {
  killAllNow()
}
