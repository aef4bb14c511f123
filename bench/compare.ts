// `npm run bench:compare -- --baseline DIR [--rounds 2]`: the bench's ROLE=all phases against this
// checkout and another one with a built dist/ (an earlier commit, say), in alternating rounds on one
// Redis (AOF everysec), so that both meet the same machine. Prints a before/after table in
// Markdown for BENCHMARKS.md: intake req/s against the framework floor, events delivered to all
// three subscribers during a closed-loop burst, end-to-end throughput, Persona's 2xx latency and
// end-to-end latency at a paced 1,000/s, and the relay's RSS.
import { Redis } from 'ioredis'
import { argument } from './lib/args.js'
import { blast } from './lib/load.js'
import { killAllNow, ROOT, startRedis, startTsServer } from './lib/processes.js'
import { measureShape, type Settings, type ShapeResult, type Subscribers } from './lib/scenario.js'

const baseline = argument('baseline', '')
const rounds = Number(argument('rounds', '2'))
const settings: Settings = {
  quick: false, warmupSeconds: 2, intakeSeconds: 10, latencySeconds: 10, verifySeconds: 0, memoryEvents: 0, drainDeadlineMs: 90_000, latencyRate: 1000
}
const log = (text: string) => process.stdout.write(`${text}\n`)

const mean = (values: number[]) => values.reduce((sum, value) => sum + value, 0) / values.length
const rssMb = (result: ShapeResult) => Math.max(...Object.values(result.rssMaxBytes)) / 2 ** 20

if (!baseline) {
  process.stderr.write('usage: npm run bench:compare -- --baseline <checkout with a built dist/>\n')
  process.exit(2)
}

try {
  const redis = await startRedis('aof-everysec')
  const subscribers = await startTsServer<Subscribers>('subscribers.ts')
  const floor = await startTsServer<{ ready: string }>('floor.ts')
  await blast(floor.ready.ready, { seconds: settings.warmupSeconds })
  const floorRps = (await blast(floor.ready.ready, { seconds: settings.intakeSeconds })).rps
  await floor.stop()
  log(`floor: ${floorRps.toFixed(0)} req/s`)
  const client = new Redis(redis.url)
  const runs: Record<'before' | 'after', ShapeResult[]> = { before: [], after: [] }
  for (let round = 1; round <= rounds; round++) {
    for (const [side, root] of [['before', baseline], ['after', ROOT]] as const) {
      await client.flushall()
      const result = await measureShape('all', redis, subscribers.ready, settings, (text) => log(`${side} round ${round}:${text}`), root)
      runs[side].push(result)
      const { intake, throughput, latency } = result
      log(`${side} round ${round}: intake ${intake.rps.toFixed(0)} req/s, ${(100 * throughput.duringBurst / throughput.accepted).toFixed(0)} % delivered during the burst, ` +
        `end-to-end ${throughput.perSecond.toFixed(0)}/s, 2xx p99 ${latency.sender.answerP99?.toFixed(1)} ms, RSS ${rssMb(result).toFixed(0)} MB`)
    }
  }
  client.disconnect()
  const row = (label: string, value: (result: ShapeResult) => number, digits: number, unit = '') => {
    const [before, after] = [mean(runs.before.map(value)), mean(runs.after.map(value))]
    return `| ${label} | ${before.toFixed(digits)}${unit} | ${after.toFixed(digits)}${unit} | ${(after / before).toFixed(2)}× |`
  }
  log(['', `ROLE=all, AOF everysec, three subscribers answering at once, ${rounds} alternating rounds each (means); floor ${floorRps.toFixed(0)} req/s`, '',
    '| | before | after | after ÷ before |', '|---|---|---|---|',
    row('intake, closed loop at 50 connections (× the floor)', (result) => result.intake.rps / floorRps, 2),
    row('events delivered to all three during the burst (% of accepted)', (result) => 100 * result.throughput.duringBurst / result.throughput.accepted, 0, ' %'),
    row('end-to-end throughput (accepted ÷ time until the last reached all three)', (result) => result.throughput.perSecond, 0, '/s'),
    row('Persona\'s 2xx latency p99 at a paced 1,000/s', (result) => result.latency.sender.answerP99 ?? NaN, 1, ' ms'),
    row('end-to-end latency p99 at a paced 1,000/s', (result) => result.latency.p99 ?? NaN, 1, ' ms'),
    row('relay RSS, highest', rssMb, 0, ' MB')
  ].join('\n'))
  await subscribers.stop()
  await redis.stop()
} catch (error) {
  process.stderr.write(`compare failed: ${error instanceof Error ? error.stack : String(error)}\n`)
  process.exitCode = 1
} finally {
  killAllNow()
}
