import type { Env } from './schema.js'

export interface HostPort {
  host: string
  port: number
}

/** Where Redis is: one node, a Redis Cluster, or a primary that Sentinel may move. */
export type RedisTopology =
  | { mode: 'single'; url: string }
  | { mode: 'cluster'; nodes: HostPort[] }
  | { mode: 'sentinel'; sentinels: HostPort[]; name: string; sentinelUsername: string | undefined; sentinelPassword: string | undefined }

/**
 * How the relay's keys are named (store/keys.ts). `tagged` puts each group of keys that one script
 * or command touches together under one hash tag, as Redis Cluster needs; untagged is the layout a
 * single node has always had, kept so that an upgrade finds its data where it left it.
 */
export interface KeyLayout {
  prefix: string
  /** Intake streams; an event's partition comes from its id. */
  partitions: number
  tagged: boolean
}

export interface RedisConfig {
  topology: RedisTopology
  /** Data nodes' credentials in cluster and sentinel modes (a REDIS_URL carries its own). */
  username: string | undefined
  password: string | undefined
  /** TLS in cluster and sentinel modes (a REDIS_URL says rediss://), with an own CA when given. */
  tls: { caFile: string | undefined } | undefined
  layout: KeyLayout
  /** Replicas that must confirm an event's write before Persona gets its 2xx; 0: none. */
  waitReplicas: number
  waitTimeoutMs: number
}

const DEFAULT_URL = 'redis://127.0.0.1:6379'
const CLUSTER_PARTITIONS = 16

/** The Redis settings, with what is wrong with them added to `problems`. */
export function redisConfigOf(env: Env, problems: string[]): RedisConfig {
  const modes = (['REDIS_URL', 'REDIS_CLUSTER_NODES', 'REDIS_SENTINELS'] as const).filter((key) => env[key] !== undefined)
  if (modes.length > 1) problems.push(`${modes.join(', ')}: set only one of them; each names a different kind of Redis (one node, a cluster, or sentinels)`)
  const topology = topologyOf(env, problems)
  if (topology.mode === 'single') {
    for (const key of ['REDIS_USERNAME', 'REDIS_PASSWORD'] as const) {
      if (env[key] !== undefined) problems.push(`${key}: with REDIS_URL the credentials go in the URL (redis://user:password@host:port)`)
    }
    if (env.REDIS_TLS) problems.push('REDIS_TLS: with REDIS_URL, TLS is asked for by the scheme (rediss://)')
  }
  if (topology.mode !== 'sentinel') {
    for (const key of ['REDIS_SENTINEL_NAME', 'REDIS_SENTINEL_USERNAME', 'REDIS_SENTINEL_PASSWORD'] as const) {
      if (env[key] !== undefined) problems.push(`${key}: only applies with REDIS_SENTINELS`)
    }
  }
  const tls = topology.mode === 'single' ? topology.url.startsWith('rediss://') : env.REDIS_TLS
  if (env.REDIS_TLS_CA_FILE !== undefined && !tls) problems.push('REDIS_TLS_CA_FILE: only applies with TLS (rediss:// or REDIS_TLS=true)')
  const partitions = env.INTAKE_PARTITIONS ?? (topology.mode === 'cluster' ? CLUSTER_PARTITIONS : 1)
  return {
    topology,
    username: env.REDIS_USERNAME,
    password: env.REDIS_PASSWORD,
    tls: tls ? { caFile: env.REDIS_TLS_CA_FILE } : undefined,
    layout: { prefix: env.REDIS_PREFIX, partitions, tagged: topology.mode === 'cluster' || partitions > 1 },
    waitReplicas: env.REDIS_WAIT_REPLICAS,
    waitTimeoutMs: env.REDIS_WAIT_TIMEOUT_MS
  }
}

function topologyOf(env: Env, problems: string[]): RedisTopology {
  if (env.REDIS_CLUSTER_NODES !== undefined) return { mode: 'cluster', nodes: hostPorts(env.REDIS_CLUSTER_NODES, 'REDIS_CLUSTER_NODES', problems) }
  if (env.REDIS_SENTINELS !== undefined) {
    if (env.REDIS_SENTINEL_NAME === undefined) problems.push('REDIS_SENTINEL_NAME: required with REDIS_SENTINELS (the name the sentinels monitor the primary under)')
    return {
      mode: 'sentinel',
      sentinels: hostPorts(env.REDIS_SENTINELS, 'REDIS_SENTINELS', problems),
      name: env.REDIS_SENTINEL_NAME ?? '',
      sentinelUsername: env.REDIS_SENTINEL_USERNAME,
      sentinelPassword: env.REDIS_SENTINEL_PASSWORD
    }
  }
  return { mode: 'single', url: env.REDIS_URL ?? DEFAULT_URL }
}

function hostPorts(list: string, key: string, problems: string[]): HostPort[] {
  return list.split(',').map((item) => item.trim()).map((item) => {
    const [host, port] = item.split(':') as [string, string]
    if (Number(port) < 1 || Number(port) > 65535) problems.push(`${key}: ${item} has no port between 1 and 65535`)
    return { host, port: Number(port) }
  })
}
