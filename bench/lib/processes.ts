import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { freePort } from '../../test/helpers/redis.js'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const LOADER = join(ROOT, 'node_modules/@tapjs/typescript/dist/esm/import.mjs')

const children = new Set<ChildProcess>()
const tempDirs = new Set<string>()

/** Every process the bench started dies with it, also on a crash or Ctrl-C. */
export function killAllNow() {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  children.clear()
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true })
  tempDirs.clear()
}
process.on('exit', killAllNow)
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => { killAllNow(); process.exit(130) })

export interface Proc {
  child: ChildProcess
  pid: number
  output(): string
  stop(): Promise<void>
  /** SIGKILL, for a process whose backlog does not matter any more. */
  kill(): Promise<void>
}

function track(child: ChildProcess, name: string): Proc {
  children.add(child)
  let output = ''
  child.stdout?.on('data', (chunk: Buffer) => { output = (output + chunk.toString()).slice(-20_000) })
  child.stderr?.on('data', (chunk: Buffer) => { output = (output + chunk.toString()).slice(-20_000) })
  child.on('error', (error) => { output += `\n${name}: ${error.message}` })
  const halt = async (signal: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit')
      child.kill(signal)
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
      await exited
      clearTimeout(timer)
    }
    children.delete(child)
  }
  return { child, pid: child.pid ?? 0, output: () => output, stop: () => halt('SIGTERM'), kill: () => halt('SIGKILL') }
}

async function waitFor<T>(what: string, proc: Proc, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (proc.child.exitCode !== null) throw new Error(`${what} exited early:\n${proc.output().slice(-2000)}`)
    const value = await probe()
    if (value !== undefined) return value
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error(`${what} not ready after ${timeoutMs} ms:\n${proc.output().slice(-2000)}`)
}

export type Persistence = 'aof-everysec' | 'none'

export interface BenchRedis extends Proc { port: number; url: string }

/** A throwaway data directory, removed with the bench's processes. */
export function tempDir(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `persona-relay-bench-${name}-`))
  tempDirs.add(dir)
  return dir
}

export function removeTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true })
  tempDirs.delete(dir)
}

/** A port nobody listens on (never 6379, and never one this bench handed out before). */
const claimed = new Set<number>()
export async function claimPort(): Promise<number> {
  for (;;) {
    const port = await freePort()
    if (port !== 6379 && !claimed.has(port)) {
      claimed.add(port)
      return port
    }
  }
}

export const PERSISTENCE_ARGS: Record<Persistence, string[]> = {
  'aof-everysec': ['--appendonly', 'yes', '--appendfsync', 'everysec'],
  none: ['--appendonly', 'no']
}

/** A redis-server on `port` (tracked, so it dies with the bench) with the bench's common settings and `args`. */
export async function spawnRedis(port: number, dir: string, args: string[]): Promise<Proc> {
  const proc = track(spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--dir', dir,
    '--maxmemory-policy', 'noeviction', ...args], { stdio: ['ignore', 'pipe', 'pipe'] }), `redis-server ${port}`)
  await waitFor(`redis-server ${port}`, proc, () => proc.output().includes('Ready to accept connections') || undefined, 10_000)
  return proc
}

/** A throwaway redis-server on a free port: never anyone else's Redis. With `replicaOf`, a replica of that port. */
export async function startRedis(persistence: Persistence, options: { replicaOf?: number } = {}): Promise<BenchRedis> {
  const port = await claimPort()
  const replica = options.replicaOf ? ['--replicaof', '127.0.0.1', String(options.replicaOf), '--repl-diskless-sync-delay', '0'] : []
  const dir = tempDir('redis')
  const proc = await spawnRedis(port, dir, [...PERSISTENCE_ARGS[persistence], ...replica])
  return { ...proc, port, url: `redis://127.0.0.1:${port}`, stop: async () => { await proc.stop(); removeTempDir(dir) } }
}

/** A bench TypeScript server (floor, subscribers) in its own process; resolves with its ready line. */
export async function startTsServer<T>(file: string, env: Record<string, string> = {}): Promise<Proc & { ready: T }> {
  const proc = track(spawn(process.execPath, ['--import', LOADER, join(ROOT, 'bench', file)],
    { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] }), file)
  const ready = await waitFor(file, proc, () => {
    const line = proc.output().split('\n').find((text) => text.startsWith('{"ready"'))
    return line === undefined ? undefined : JSON.parse(line) as T
  })
  return { ...proc, ready }
}

const RELAY_SETTING = /^(PORT|HOST|LOG_LEVEL|ROLE|ADMIN_TOKEN|TRUST_PROXY|METRICS_PORT|REDIS_|PERSONA_|SUBSCRIBER_|DELIVERY_|DEDUPE_|BODY_LIMIT_|DEAD_LETTER_|SHUTDOWN_|RETENTION_|BREAKER_|OTEL_)/

export interface Relay extends Proc { baseUrl: string }

/**
 * The relay as the image runs it (bin/serve, with its heap settings) with only the given relay
 * settings; resolves once /healthz answers. `root` is another checkout's built relay, for a
 * before/after comparison in one run (one without bin/serve runs as `node dist/server.js`).
 * `nodeArgs` (a profiler, say) go on the relay's node command line; RELAY_NODE_OPTIONS becomes its
 * NODE_OPTIONS (a heap cap, say), leaving the load generator's alone.
 */
export async function startRelay(env: Record<string, string>, nodeArgs: string[] = [], root = ROOT): Promise<Relay> {
  const port = await freePort()
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([key]) => !RELAY_SETTING.test(key)))
  const launcher = join(root, 'bin/serve')
  const [command, args] = existsSync(launcher) ? [launcher, nodeArgs] : [process.execPath, [...nodeArgs, 'dist/server.js']]
  const proc = track(spawn(command, args, {
    cwd: root,
    env: {
      ...inherited,
      PORT: String(port),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
      ...(process.env.RELAY_NODE_OPTIONS ? { NODE_OPTIONS: process.env.RELAY_NODE_OPTIONS } : {}),
      ...env
    },
    stdio: ['ignore', 'pipe', 'pipe']
  }), `relay ${env.ROLE ?? 'all'}`)
  const baseUrl = `http://127.0.0.1:${port}`
  await waitFor(`relay ${env.ROLE ?? 'all'}`, proc, async () => {
    const response = await fetch(`${baseUrl}/healthz`).catch(() => undefined)
    return response?.status === 200 ? true : undefined
  })
  return { ...proc, baseUrl }
}

/** VmRSS of a process in bytes (Linux), or 0 when it cannot be read. */
export function rssBytes(pid: number): number {
  try {
    const match = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return match ? Number(match[1]) * 1024 : 0
  } catch {
    return 0
  }
}

/** User + system CPU time of a process in milliseconds (Linux /proc/<pid>/stat). */
export function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const ticks = Number(fields[11]) + Number(fields[12])
    return ticks * 10 // USER_HZ is 100 on Linux
  } catch {
    return 0
  }
}

/**
 * CPU time of the whole machine, all cores together, in ticks (Linux /proc/stat): busy (user, nice,
 * system, interrupts), steal (taken by the hypervisor for other guests) and the total with idle.
 */
export function machineTicks(): { busy: number; steal: number; total: number } {
  const [user, nice, system, idle, iowait, irq, softirq, steal] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1, 9).map(Number) as number[]
  const busy = user! + nice! + system! + irq! + softirq!
  return { busy, steal: steal!, total: busy + steal! + idle! + iowait! }
}

/** Samples the max RSS of some processes every 100 ms until stopped. */
export function rssSampler(pids: number[]) {
  const max = new Map(pids.map((pid) => [pid, rssBytes(pid)]))
  const timer = setInterval(() => { for (const pid of pids) max.set(pid, Math.max(max.get(pid) ?? 0, rssBytes(pid))) }, 100)
  return { stop: () => { clearInterval(timer); return pids.map((pid) => max.get(pid) ?? 0) } }
}
