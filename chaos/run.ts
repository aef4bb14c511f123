import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { cpus, totalmem, release, platform } from 'node:os'
import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { ScenarioResult } from './check.js'
import { activeCleanups, runScenario, SCENARIOS } from './scenarios.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const PROPERTY_FILES = ['test/persona/signature.property.test.ts', 'test/intake/route.property.test.ts']
const PROPERTY_TIMEOUT_MS = 15 * 60_000

interface Options {
  scenarios: number[]
  property: boolean
  events: number
  propertyRuns: number
}

function parseArgs(argv: string[]): Options {
  const options: Options = { scenarios: [], property: false, events: 3000, propertyRuns: 10_000 }
  let chosen = false
  for (let i = 0; i < argv.length; i += 1) {
    const [flag, inline] = argv[i]!.split('=', 2) as [string, string | undefined]
    const value = () => inline ?? argv[++i] ?? ''
    if (flag === '--scenario') {
      chosen = true
      for (const part of value().split(',')) {
        if (part === 'property') options.property = true
        else if (SCENARIOS[Number(part)]) options.scenarios.push(Number(part))
        else throw new Error(`--scenario: expected 1-${Object.keys(SCENARIOS).length} or "property", got "${part}"`)
      }
    } else if (flag === '--events') options.events = positive(flag, value())
    else if (flag === '--property-runs') options.propertyRuns = positive(flag, value())
    else throw new Error(`unknown option ${flag} (use --scenario N|property, --events N, --property-runs N)`)
  }
  if (!chosen) {
    options.scenarios = Object.keys(SCENARIOS).map(Number)
    options.property = true
  }
  return options
}

function positive(flag: string, text: string): number {
  const n = Number(text)
  if (!Number.isInteger(n) || n < 1) throw new Error(`${flag}: expected a positive integer, got "${text}"`)
  return n
}

let propertyChild: ChildProcess | undefined

interface PropertyResult { ok: boolean; runs: number; properties: number; seconds: number }

/** The property-based tests under tap with the full case count. */
async function runPropertyTests(runs: number): Promise<PropertyResult> {
  const startedAt = Date.now()
  const child = spawn('npx', ['tap', '--disable-coverage', '--reporter=tap', ...PROPERTY_FILES], {
    cwd: ROOT, env: { ...process.env, PROPERTY_RUNS: String(runs) }, stdio: ['ignore', 'pipe', 'pipe'], detached: true
  })
  propertyChild = child
  let output = ''
  child.stdout!.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr!.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const timer = setTimeout(() => killGroup(child), PROPERTY_TIMEOUT_MS)
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
  clearTimeout(timer)
  propertyChild = undefined
  const seconds = (Date.now() - startedAt) / 1000
  if (code !== 0) process.stderr.write(output)
  // Each property's test name carries its case count: count those that passed with the full count.
  const properties = output.split('\n').filter((line) => /^\s*ok \d+ - /.test(line) && line.includes(`(${runs} cases)`)).length
  return { ok: code === 0 && properties > 0, runs, properties, seconds }
}

function killGroup(child: ChildProcess) {
  if (child.pid !== undefined && child.exitCode === null) {
    try { process.kill(-child.pid, 'SIGKILL') } catch { /* already gone */ }
  }
}

function table(results: ScenarioResult[]): string {
  const lines = [
    '| # | scenario | sent | acknowledged | deliveries owed | delivered | lost | duplicates | time (s) | result |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---|'
  ]
  for (const r of results) {
    lines.push(`| ${r.scenario} | ${r.title} | ${r.sent} | ${r.acknowledged} | ${r.expected} | ${r.delivered} | ${r.lost} | ${r.duplicates} | ${r.seconds.toFixed(1)} | ${r.failures.length > 0 ? 'FAIL' : r.lossMeasured ? 'measured' : 'pass'} |`)
  }
  return lines.join('\n')
}

function environment(): string[] {
  const redis = execFileSync('redis-server', ['--version'], { encoding: 'utf8' }).trim()
  const cpu = cpus()
  return [
    `- Machine: ${platform()} ${release()}, ${cpu.length} × ${cpu[0]?.model ?? 'unknown CPU'}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM`,
    `- Node.js: ${process.version}`,
    `- Redis: ${redis}`,
    '- Redis persistence: AOF, `appendonly yes`, `appendfsync always` (an acknowledged event is on disk), no RDB snapshots, `maxmemory-policy noeviction`',
    '- Relay: `src/server.ts` run by the TypeScript loader (`@tapjs/typescript`), as `test/helpers/relay-process.ts` does; no build needed'
  ]
}

function writeReport(options: Options, results: ScenarioResult[], property: PropertyResult | undefined) {
  const notes = results.flatMap((r) => [...r.notes, ...r.failures.map((f) => `**FAIL**: ${f}`)].map((note) => `- ${r.scenario}: ${note}`))
  const text = `# Reliability

What \`npm run chaos\` checks and what it found the last time it ran in full. Every scenario posts
unique signed events to a real relay process over HTTP on 127.0.0.1, records every event id that got
a 2xx, and at the end checks that each of those reached every subscriber whose pattern matches it at
least once (a *delivery* is a 2xx the subscriber finished writing to a relay still waiting for it),
counting duplicates. Retries run on compressed time (\`DELIVERY_RETRY_SCHEDULE=0.2,0.5,1\`,
\`DELIVERY_MAX_ATTEMPTS=40\`, \`DELIVERY_LOCK_DURATION_MS=3000\`, \`BREAKER_PROBE_INTERVAL_SECONDS=1\`).
The harness exits non-zero on any loss (and on the other failed checks listed below).

\`\`\`sh
npm run chaos                                  # all ${Object.keys(SCENARIOS).length} scenarios + property tests (${options.propertyRuns} cases each)
npm run chaos -- --scenario 4 --events 500     # one scenario, smaller load (CI smoke check)
npm run chaos -- --scenario property           # only the property-based tests
\`\`\`

1. **Redis SIGKILL** at 30 % of the load, restarted on the same port and AOF after 2 s. While it is
   down the intake must answer 503 (and nothing else but 2xx); nothing acknowledged may be lost.
2. **Relay SIGKILL** at 40 % of the load and a new process started. Nothing acknowledged may be lost;
   duplicates (deliveries in flight at the kill) are counted.
3. **Subscriber down** (connection refused) for ~3 s, then back: all its deliveries must arrive after
   it is back, and the other subscriber's latency during the outage must stay under 1 s (p99).
4. **Slow and resetting subscribers**: one with a 150 ms timeout answers the first request for a
   third of the events after 450 ms; the other resets a quarter of all connections. Everything must
   arrive eventually.
5. **Two relays on one Redis**, each event posted to both: each event must be recorded once and
   delivered once per subscriber (0 duplicates).
6. **Cluster primary SIGKILL** (\`REDIS_WAIT_REPLICAS=1\`): a Redis Cluster of 3 primaries and 3
   replicas (AOF, \`appendfsync everysec\`, \`cluster-node-timeout 1000\`); at 30 % of the load the primary
   of intake partition 0 is SIGKILLed, its replica takes over, and the killed node is started again
   (it rejoins as a replica). Every answer other than a 2xx is retried every 250 ms for up to 30 s, as
   Persona retries. The intake must answer only 2xx or 503, every event must end acknowledged, and
   nothing acknowledged may be lost.
7. **Sentinel primary SIGKILL** (\`REDIS_WAIT_REPLICAS=1\`): one primary, one replica (no
   persistence) and three sentinels (quorum 2, \`down-after-milliseconds 1000\`); the same kill, promotion,
   restart, retries and checks.
8. **Cluster primary SIGKILL** (\`REDIS_WAIT_REPLICAS=0\`): as 6, a measurement of what an
   acknowledgement without WAIT loses (reported as *measured*; a loss is not a failure).
9. **Sentinel primary SIGKILL** (\`REDIS_WAIT_REPLICAS=0\`): as 7, the same measurement.

Finding, fixed: a circuit-breaker probe used to re-send the *same* oldest delivery each time, and a
delivery spends no attempts while its subscriber is paused, so one delivery the subscriber kept
refusing held the whole subscriber paused while everything behind it waited (reproduced with
slowness keyed on \`persona-relay-attempt\`: one event requested 33 times, 914 of 1000 deliveries still
waiting after 30 s). Probes now take turns among the oldest few waiting and delayed deliveries
(regression test: \`test/delivery/breaker-poisoned.test.ts\`).

Plus the property-based tests (\`test/**/*.property.test.ts\`) with \`PROPERTY_RUNS=${options.propertyRuns}\`.

${readFileSync(new URL('./hardening.md', import.meta.url), 'utf8').trim()}

## Environment

${environment().join('\n')}
- Run: ${new Date().toISOString()}, ${options.events} events per scenario at 400/s

## Latest results

${table(results)}

${property ? `Property-based tests: ${property.ok ? 'pass' : '**FAIL**'}, ${property.properties} properties × ${property.runs} generated cases (${property.properties * property.runs} in all, ${property.seconds.toFixed(0)} s): the signature parser and verifier (random, truncated, unicode, duplicated groups, non-hex v1, negative, fractional or huge t) and the intake route through \`app.inject\` (wrong content types, oversized, not JSON or not UTF-8, deeply nested JSON, every signature failure, valid and duplicate events). Never a 5xx, always the documented status and code.` : ''}

Notes:

${notes.join('\n')}
`
  writeFileSync(new URL('../RELIABILITY.md', import.meta.url), text)
}

async function main() {
  const options = parseArgs(process.argv.slice(2))
  const runId = Date.now().toString(36)
  const results: ScenarioResult[] = []
  for (const id of options.scenarios) {
    process.stdout.write(`scenario ${id}: ${SCENARIOS[id]!.title} (${options.events} events)…\n`)
    const result = await runScenario(id, { events: options.events, runId: `${runId}s${id}` })
    results.push(result)
    for (const note of [...result.notes, ...result.failures.map((f) => `FAIL: ${f}`)]) process.stdout.write(`  ${note}\n`)
  }
  let property: PropertyResult | undefined
  if (options.property) {
    process.stdout.write(`property-based tests, PROPERTY_RUNS=${options.propertyRuns}…\n`)
    property = await runPropertyTests(options.propertyRuns)
    process.stdout.write(`  ${property.ok ? 'pass' : 'FAIL'}: ${property.properties} properties × ${property.runs} cases in ${property.seconds.toFixed(0)} s\n`)
  }
  if (results.length > 0) process.stdout.write(`\n${table(results)}\n`)
  const full = options.scenarios.length === Object.keys(SCENARIOS).length && options.property
  if (full) writeReport(options, results, property)
  const failed = results.some((r) => r.failures.length > 0 || (r.lost > 0 && !r.lossMeasured)) || (property !== undefined && !property.ok)
  process.exitCode = failed ? 1 : 0
}

async function abort(signal: NodeJS.Signals) {
  if (propertyChild) killGroup(propertyChild)
  await Promise.all([...activeCleanups].map((cleanup) => cleanup.run()))
  process.exit(signal === 'SIGINT' ? 130 : 143)
}
process.once('SIGINT', (signal) => void abort(signal))
process.once('SIGTERM', (signal) => void abort(signal))

try {
  await main()
} catch (error) {
  process.stderr.write(`chaos: ${(error as Error).message}\n`)
  await Promise.all([...activeCleanups].map((cleanup) => cleanup.run()))
  process.exitCode = 2
}
