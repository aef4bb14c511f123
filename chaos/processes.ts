import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import { freePort } from '../test/helpers/redis.js'
import { startRedisCluster, startRedisSentinel, type TopologyNode } from '../test/helpers/redis-topology.js'
import { startRelayProcess, type RelayProcess } from '../test/helpers/relay-process.js'

/** Everything a scenario started, undone in reverse order whatever happens (also on failure). */
export class Cleanup {
  private readonly steps: (() => unknown)[] = []

  add(step: () => unknown): void {
    this.steps.push(step)
  }

  /** The shape relay-process.ts expects of a tap Test: only teardown is used. */
  asTest(): Test {
    return { teardown: (step: () => unknown) => this.add(step) } as unknown as Test
  }

  async run(): Promise<void> {
    for (const step of this.steps.splice(0).reverse()) {
      let timer: NodeJS.Timeout | undefined
      const limit = new Promise((resolve) => { timer = setTimeout(resolve, 10_000) })
      await Promise.race([Promise.resolve().then(step).catch(() => undefined), limit])
      clearTimeout(timer)
    }
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Polls `check` every `everyMs` until it is true or `timeoutMs` passed; returns whether it became true. */
export async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 50): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await check()) return true
    if (Date.now() > deadline) return false
    await sleep(everyMs)
  }
}

export interface ChaosRedis {
  url: string
  kill(): Promise<void>
  start(): Promise<void>
}

/**
 * A throwaway redis-server on 127.0.0.1 and a free port (never 6379), with AOF and
 * `appendfsync always`: an event Redis acknowledged is on disk before the relay answers 200.
 */
export async function startChaosRedis(cleanup: Cleanup): Promise<ChaosRedis> {
  const port = await freePort()
  if (port === 6379) throw new Error('refusing to use port 6379')
  const dir = mkdtempSync(join(tmpdir(), 'persona-relay-chaos-'))
  let child: ChildProcess | undefined

  const start = async () => {
    const spawned = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--dir', dir,
      '--appendonly', 'yes', '--appendfsync', 'always', '--maxmemory-policy', 'noeviction'], { stdio: ['ignore', 'pipe', 'pipe'] })
    child = spawned
    let output = ''
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis-server not ready in 15 s: ${output.slice(-300)}`)), 15_000)
      spawned.once('error', reject)
      spawned.stdout!.on('data', (chunk: Buffer) => {
        output += chunk.toString()
        if (output.includes('Ready to accept connections')) {
          clearTimeout(timer)
          resolve()
        }
      })
      spawned.once('exit', (code) => reject(new Error(`redis-server exited with ${code}: ${output.slice(-300)}`)))
    })
  }
  const kill = async () => {
    const current = child
    child = undefined
    if (!current || current.exitCode !== null || current.signalCode !== null) return
    const exited = once(current, 'exit')
    current.kill('SIGKILL')
    await exited
  }
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }))
  cleanup.add(kill)
  await start()
  return { url: `redis://127.0.0.1:${port}`, kill, start }
}

/** Fast retries and lock expiry so that a scenario takes seconds, not the production hours. */
export const COMPRESSED_TIME: Record<string, string> = {
  LOG_LEVEL: 'info',
  DELIVERY_RETRY_SCHEDULE: '0.2,0.5,1',
  DELIVERY_MAX_ATTEMPTS: '40',
  DELIVERY_TIMEOUT_MS: '1000',
  DELIVERY_LOCK_DURATION_MS: '3000',
  BREAKER_PROBE_INTERVAL_SECONDS: '1',
  SHUTDOWN_TIMEOUT_MS: '3000'
}

/** `src/server.ts` under the TypeScript loader, as the tests run it (relay-process.ts). */
export async function startRelay(cleanup: Cleanup, name: string, redis: ChaosRedis, env: Record<string, string>): Promise<RelayProcess> {
  const relay = await startRelayProcess(cleanup.asTest(), name, { url: redis.url } as never, { ...COMPRESSED_TIME, ...env })
  // The relay logs one line per webhook: keep only what startup needs so a long run stays small.
  relay.child.stdout!.removeAllListeners('data')
  relay.child.stdout!.resume()
  return relay
}

export async function killRelay(relay: RelayProcess): Promise<void> {
  if (relay.child.exitCode !== null || relay.child.signalCode !== null) return
  relay.child.kill('SIGKILL')
  await relay.exited
}

export interface Topology {
  /** REDIS_CLUSTER_NODES, or REDIS_SENTINELS and REDIS_SENTINEL_NAME. */
  env: Record<string, string>
  /**
   * SIGKILLs the primary (a cluster's: the one of intake partition 0) and waits until a replica
   * serves in its place; `node.start()` brings the killed one back, as a replica.
   */
  killPrimary(): Promise<{ node: TopologyNode; note: string }>
}

/** A Redis Cluster of three primaries and three replicas, AOF with appendfsync everysec. */
export async function startChaosCluster(cleanup: Cleanup): Promise<Topology> {
  const cluster = await startRedisCluster({ appendfsync: 'everysec', nodeTimeoutMs: 1000 })
  cleanup.add(() => cluster.stop())
  const partitions = Array.from({ length: 16 }, (_, partition) => `persona-relay:{i${partition}}:intake`)
  return {
    env: { REDIS_CLUSTER_NODES: cluster.startupNodes },
    async killPrimary() {
      const victim = await cluster.primaryForKey(partitions[0]!)
      const owners = await Promise.all(partitions.map((key) => cluster.primaryForKey(key)))
      const node = await cluster.killPrimaryOf(partitions[0]!)
      const promoted = await cluster.waitForFailover(node.port, 30_000)
      const served = owners.filter((owner) => owner.port === victim.port).length
      return { node, note: `primary ${node.port} (${served} of the 16 intake partitions) SIGKILLed, replica ${promoted.port} took over` }
    }
  }
}

/** One primary, one replica (no persistence) and three sentinels. */
export async function startChaosSentinel(cleanup: Cleanup): Promise<Topology> {
  const sentinel = await startRedisSentinel()
  cleanup.add(() => sentinel.stop())
  return {
    env: { REDIS_SENTINELS: sentinel.sentinels, REDIS_SENTINEL_NAME: sentinel.name },
    async killPrimary() {
      const port = await sentinel.killPrimary()
      const promoted = await sentinel.waitForFailover(port, 30_000)
      return { node: sentinel.nodes.find((node) => node.port === port)!, note: `primary ${port} SIGKILLed, the sentinels promoted ${promoted}` }
    }
  }
}

export interface WatchedRelay {
  relay: RelayProcess
  /** Output lines so far that match the pattern (a line split across chunks may be missed). */
  count(pattern: RegExp): number
}

/** A relay on a cluster or sentinels; its output is scanned for the given patterns, not kept. */
export async function startTopologyRelay(cleanup: Cleanup, name: string, topology: Topology, env: Record<string, string>, patterns: RegExp[]): Promise<WatchedRelay> {
  const relay = await startRelayProcess(cleanup.asTest(), name, { url: '' } as never, { ...COMPRESSED_TIME, ...env, ...topology.env, REDIS_URL: '' })
  const counts = new Map<RegExp, number>(patterns.map((pattern) => [pattern, 0]))
  const scan = (chunk: Buffer) => {
    for (const line of chunk.toString().split('\n')) for (const pattern of patterns) if (pattern.test(line)) counts.set(pattern, counts.get(pattern)! + 1)
  }
  relay.child.stdout!.removeAllListeners('data')
  relay.child.stdout!.on('data', scan)
  relay.child.stderr!.on('data', scan)
  return { relay, count: (pattern) => counts.get(pattern) ?? 0 }
}
