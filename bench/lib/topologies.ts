import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { claimPort, PERSISTENCE_ARGS, removeTempDir, spawnRedis, startRedis, tempDir, type Persistence, type Proc } from './processes.js'

/** The Redis setups the cluster shape compares; a relay is pointed at one by `env`. */
export type TopologyKind = 'single' | 'single-partitioned' | 'cluster' | 'cluster-replicas'

export const TOPOLOGY_NAMES: Record<TopologyKind, string> = {
  single: 'one node',
  // The cluster's intake layout on one node: what partitioning costs, apart from the cluster.
  'single-partitioned': 'one node, 16 partitions',
  cluster: 'cluster, 3 primaries',
  'cluster-replicas': 'cluster, 3 primaries + 3 replicas'
}

export interface BenchTopology {
  kind: TopologyKind
  /** REDIS_URL or REDIS_CLUSTER_NODES (and INTAKE_PARTITIONS where it is not the mode's default). */
  env: Record<string, string>
  /** The Redis processes, for CPU accounting. */
  pids: { primaries: number[]; replicas: number[] }
  /** One URL per primary, for INFO. */
  primaryUrls: string[]
  /** After a round: still every slot served by the primary it started on, every replica linked (no failover under load). */
  unchanged(): Promise<boolean>
  stop(): Promise<void>
}

async function info(client: Redis, section: string): Promise<Record<string, string>> {
  const text = section === 'cluster' ? String(await client.call('CLUSTER', 'INFO')) : await client.info(section)
  return Object.fromEntries(text.split(/\r?\n/).filter((line) => line.includes(':')).map((line) => {
    const at = line.indexOf(':')
    return [line.slice(0, at), line.slice(at + 1)]
  }))
}

async function until(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!await check().catch(() => false)) {
    if (Date.now() > deadline) throw new Error(`${what} not within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

async function createCluster(ports: number[], replicas: number): Promise<void> {
  const cli = spawn('redis-cli', ['--cluster', 'create', ...ports.map((port) => `127.0.0.1:${port}`),
    '--cluster-replicas', String(replicas), '--cluster-yes'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  for (const stream of [cli.stdout, cli.stderr]) stream.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const [code] = await once(cli, 'exit') as [number | null]
  if (code !== 0) throw new Error(`redis-cli --cluster create failed (${code}): ${output.slice(-1500)}`)
}

/**
 * A Redis Cluster of three primaries, with or without a replica each, every node with the same
 * persistence. The cluster-node-timeout is Redis's default of 15 s: on two saturated cores a
 * shorter one can mark a busy node failed and fail it over mid-round.
 */
async function startCluster(replicas: 0 | 1, persistence: Persistence): Promise<BenchTopology> {
  const root = tempDir('cluster')
  const nodes: (Proc & { port: number })[] = []
  const clients: Redis[] = []
  const stop = async () => {
    for (const client of clients) client.disconnect()
    await Promise.all(nodes.map((node) => node.stop()))
    removeTempDir(root)
  }
  try {
    for (let index = 0; index < 3 * (1 + replicas); index++) {
      const [port, busPort] = [await claimPort(), await claimPort()]
      const dir = join(root, String(port))
      mkdirSync(dir)
      nodes.push({ ...await spawnRedis(port, dir, ['--cluster-enabled', 'yes', '--cluster-port', String(busPort),
        '--cluster-config-file', join(dir, 'nodes.conf'), '--cluster-node-timeout', '15000', '--repl-diskless-sync-delay', '0',
        ...PERSISTENCE_ARGS[persistence]]), port })
    }
    clients.push(...nodes.map((node) => new Redis({ host: '127.0.0.1', port: node.port, lazyConnect: true, maxRetriesPerRequest: 1 })))
    await createCluster(nodes.map((node) => node.port), replicas)
    const roles = async () => Promise.all(clients.map(async (client) => (await info(client, 'replication')).role))
    const ready = async () => {
      const views = await Promise.all(clients.map(async (client) => ({ cluster: await info(client, 'cluster'), replication: await info(client, 'replication') })))
      return views.every(({ cluster, replication }) => cluster.cluster_state === 'ok' && cluster.cluster_slots_ok === '16384' &&
        cluster.cluster_known_nodes === String(nodes.length) && (replication.role === 'master' || replication.master_link_status === 'up')) &&
        views.filter(({ replication }) => replication.role === 'slave').length === 3 * replicas
    }
    await until('the cluster to serve every slot with every replica in sync', 30_000, ready)
    const started = await roles()
    const pidOf = (role: string) => nodes.filter((_, index) => started[index] === role).map((node) => node.pid)
    return {
      kind: replicas ? 'cluster-replicas' : 'cluster',
      env: { REDIS_CLUSTER_NODES: nodes.map((node) => `127.0.0.1:${node.port}`).join(',') },
      pids: { primaries: pidOf('master'), replicas: pidOf('slave') },
      primaryUrls: nodes.filter((_, index) => started[index] === 'master').map((node) => `redis://127.0.0.1:${node.port}`),
      unchanged: async () => await ready().catch(() => false) && (await roles()).every((role, index) => role === started[index]),
      stop
    }
  } catch (error) {
    await stop()
    throw error
  }
}

export async function startTopology(kind: TopologyKind, persistence: Persistence): Promise<BenchTopology> {
  if (kind === 'cluster' || kind === 'cluster-replicas') return startCluster(kind === 'cluster' ? 0 : 1, persistence)
  const redis = await startRedis(persistence)
  const env = { REDIS_URL: redis.url, ...(kind === 'single-partitioned' ? { INTAKE_PARTITIONS: '16' } : {}) }
  return { kind, env, pids: { primaries: [redis.pid], replicas: [] }, primaryUrls: [redis.url], unchanged: async () => true, stop: redis.stop }
}

export interface ReplicatedPair {
  url: string
  pids: { primary: number; replica: number }
  /** The replica still linked to the primary. */
  linked(): Promise<boolean>
  stop(): Promise<void>
}

/** One primary and one replica of it, both with the same persistence, as REDIS_WAIT_REPLICAS=1 needs. */
export async function startReplicatedPair(persistence: Persistence): Promise<ReplicatedPair> {
  const primary = await startRedis(persistence)
  const replica = await startRedis(persistence, { replicaOf: primary.port }).catch(async (error: unknown) => { await primary.stop(); throw error })
  const client = new Redis(replica.url, { lazyConnect: true, maxRetriesPerRequest: 1 })
  const linked = async () => (await info(client, 'replication')).master_link_status === 'up'
  const stop = async () => {
    client.disconnect()
    await replica.stop()
    await primary.stop()
  }
  try {
    await until('the replica to sync with its primary', 30_000, linked)
  } catch (error) {
    await stop()
    throw error
  }
  return { url: primary.url, pids: { primary: primary.pid, replica: replica.pid }, linked: () => linked().catch(() => false), stop }
}
