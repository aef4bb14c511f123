import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import type { Test } from 'tap'
import { SECRET } from './app.js'
import { freePort, type TestRedis } from './redis.js'
import { waitUntil } from './wait-until.js'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))
// Node 20 cannot run TypeScript by itself: a child loads the same TypeScript loader tap gave this process.
const LOADER = process.execArgv.filter((arg) => arg.includes('@tapjs/typescript') || arg === '--enable-source-maps')
export const LOADER_ARGS = LOADER.length > 0 ? LOADER : ['--import=@tapjs/typescript/import']
const RELAY_SETTING = /^(PORT|HOST|REQUEST_TIMEOUT_MS|MAX_CONNECTIONS|LOG_LEVEL|ROLE|ADMIN_TOKEN|TRUST_PROXY|METRICS_PORT|REDIS_|PERSONA_|SUBSCRIBER_|DELIVERY_|DEDUPE_|BODY_LIMIT_|DEAD_LETTER_|SHUTDOWN_|RETENTION_|BREAKER_|BACKFILL_|OTEL_)/

export interface RelayProcess {
  name: string
  child: ChildProcess
  baseUrl: string
  stdout(): string
  stderr(): string
  logs(): Record<string, unknown>[]
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

/**
 * `src/server.ts` in a process of its own on a free port, on the given Redis, with nothing of this
 * process's relay settings leaking in; resolves once it listens and /readyz answers 200. Killed
 * when the test ends.
 */
export async function startRelayProcess(t: Test, name: string, redis: TestRedis, env: Record<string, string>): Promise<RelayProcess> {
  // A free port can be taken by another test file's process before ours binds it: then try another.
  for (let attempt = 1; ; attempt += 1) {
    const relay = spawnRelay(t, name, await freePort(), redis, env)
    if (await listening(relay)) return relay
    if (attempt === 3) throw new Error(`${name} found no free port in ${attempt} tries`)
  }
}

function spawnRelay(t: Test, name: string, port: number, redis: TestRedis, env: Record<string, string>): RelayProcess {
  return spawnRelayWith(t, name, {
    PORT: String(port),
    HOST: '127.0.0.1',
    REDIS_URL: redis.url,
    PERSONA_WEBHOOK_SECRET: SECRET,
    LOG_LEVEL: 'info',
    DELIVERY_RETRY_SCHEDULE: '0.05',
    // Well above a clean shutdown (about a second), so that a hung one fails the test sooner.
    SHUTDOWN_TIMEOUT_MS: '8000',
    ...env
  })
}

/**
 * `src/server.ts` with exactly `env` for its relay settings (none of this process's leak in) and
 * no wait: for a relay expected not to start. Killed when the test ends.
 */
export function spawnRelayWith(t: Test, name: string, env: Record<string, string>): RelayProcess {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([key]) => !RELAY_SETTING.test(key)))
  const child = spawn(process.execPath, [...LOADER_ARGS, 'src/server.ts'], {
    cwd: ROOT,
    env: { ...inherited, ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  child.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  const exited = once(child, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }))
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  return {
    name,
    child,
    baseUrl: `http://127.0.0.1:${env.PORT}`,
    stdout: () => stdout,
    stderr: () => stderr,
    logs: () => stdout.split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as Record<string, unknown>),
    exited
  }
}

/** True once this process (not another on the same port) listens and is ready; false if the port was taken. */
async function listening(relay: RelayProcess): Promise<boolean> {
  return waitUntil(`${relay.name} to be ready`, async () => {
    if (relay.child.exitCode !== null) {
      if (`${relay.stderr()}${JSON.stringify(relay.logs())}`.includes('EADDRINUSE')) return 'port taken'
      throw new Error(`${relay.name} exited early: ${relay.stderr()}`)
    }
    if (!relay.logs().some((line) => line.msg === `Server listening at ${relay.baseUrl}`)) return false
    const response = await fetch(`${relay.baseUrl}/readyz`).catch(() => undefined)
    return response?.status === 200 && 'ready'
  }, 30_000, 50).then((state) => state === 'ready')
}
