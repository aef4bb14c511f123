import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { freePort } from './redis.js'
import { waitUntil } from './wait-until.js'

const HOST = '127.0.0.1'
const STARTUP_MS = 30_000
const SLOTS = 16_384

export interface TopologyNode {
  readonly port: number
  /** The role it was started in: after a failover ask the topology, not this. */
  readonly role: 'primary' | 'replica' | 'sentinel'
  readonly running: boolean
  /** Starts it again on the same port with the same directory (its nodes.conf, AOF or sentinel.conf). */
  start(): Promise<void>
  /** SIGKILL, as in a crash. */
  kill(): Promise<void>
  stop(): Promise<void>
}

// A test process that dies before its teardown must not leave servers behind.
const live = new Set<ChildProcess>()
process.once('exit', () => { for (const child of live) child.kill('SIGKILL') })

class RedisProcess implements TopologyNode {
  private child: ChildProcess | undefined
  private output = ''

  constructor(readonly port: number, public role: TopologyNode['role'], private readonly args: string[],
    private readonly readyLine = 'Ready to accept connections') {}

  get running(): boolean {
    return this.child !== undefined
  }

  /** Its last lines of output, for error messages. */
  tail(): string {
    return `${this.role} on ${HOST}:${this.port}${this.running ? '' : ' (not running)'}:\n${this.output.trimEnd().split('\n').slice(-8).join('\n')}`
  }

  async start(): Promise<void> {
    if (this.child) return
    if (this.port === 6379) throw new Error('refusing to start a Redis on 6379: that one is not ours')
    const spawned = spawn('redis-server', this.args, { stdio: ['ignore', 'pipe', 'pipe'] })
    this.child = spawned
    live.add(spawned)
    let sinceStart: string | undefined = ''
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        spawned.kill('SIGKILL')
        reject(new Error(`redis-server not ready in ${STARTUP_MS} ms: ${this.tail()}`))
      }, STARTUP_MS)
      const collect = (chunk: Buffer) => {
        this.output = (this.output + chunk.toString()).slice(-8000)
        if (sinceStart === undefined) return
        sinceStart += chunk.toString()
        if (sinceStart.includes(this.readyLine)) {
          sinceStart = undefined
          clearTimeout(timer)
          resolve()
        }
      }
      spawned.stdout!.on('data', collect)
      spawned.stderr!.on('data', collect)
      spawned.once('error', (error: NodeJS.ErrnoException) => {
        clearTimeout(timer)
        reject(error.code === 'ENOENT' ? new Error('redis-server is not installed (apt-get install redis-server)') : error)
      })
      spawned.once('exit', (code, signal) => {
        live.delete(spawned)
        if (this.child === spawned) this.child = undefined
        clearTimeout(timer)
        reject(new Error(`redis-server exited with ${code ?? signal} while starting: ${this.tail()}`))
      })
    })
  }

  kill(): Promise<void> {
    return this.halt('SIGKILL')
  }

  stop(): Promise<void> {
    return this.halt('SIGTERM')
  }

  private async halt(signal: NodeJS.Signals): Promise<void> {
    const current = this.child
    if (!current) return
    const exited = once(current, 'exit')
    current.kill(signal)
    const escalate = setTimeout(() => current.kill('SIGKILL'), 5000)
    await exited
    clearTimeout(escalate)
  }
}

// freePort() closes the port it found, so it may hand the same one out twice: claim each once.
const claimed = new Set<number>()
async function claimPort(): Promise<number> {
  for (;;) {
    const port = await freePort()
    if (port !== 6379 && !claimed.has(port)) {
      claimed.add(port)
      return port
    }
  }
}

/** Another process may take a free port before redis-server binds it: then try fresh ports. */
async function launch(make: () => Promise<RedisProcess>): Promise<RedisProcess> {
  for (let attempt = 1; ; attempt++) {
    const node = await make()
    try {
      await node.start()
      return node
    } catch (error) {
      if (attempt === 3 || !node.tail().includes('Address already in use')) throw error
    }
  }
}

/** One command on a short-lived connection that fails fast instead of retrying. */
export async function ask(port: number, password: string | undefined, ...args: (string | number)[]): Promise<unknown> {
  const client = new Redis({ host: HOST, port, password, lazyConnect: true, connectTimeout: 2000, commandTimeout: 2000,
    maxRetriesPerRequest: 0, enableOfflineQueue: false, enableReadyCheck: false, retryStrategy: () => null })
  // A refused handshake (NOAUTH) reaches only the error event; connect() rejects with "Connection is closed".
  let refusal: Error | undefined
  client.on('error', (error: Error) => { refusal = error })
  try {
    await client.connect().catch((error: Error) => { throw refusal ?? error })
    return await client.call(String(args[0]), ...args.slice(1))
  } finally {
    client.disconnect()
  }
}

async function tryAsk(port: number, password: string | undefined, ...args: (string | number)[]): Promise<unknown> {
  return ask(port, password, ...args).catch(() => undefined)
}

function infoField(info: unknown, field: string): string | undefined {
  return String(info ?? '').match(new RegExp(`^${field}:(.*?)\\r?$`, 'm'))?.[1]
}

/** waitUntil, with what was last seen and the tails of the processes in the error. */
async function settle<T>(what: string, timeoutMs: number, processes: RedisProcess[],
  check: (note: (seen: string) => void) => Promise<T | undefined>): Promise<T> {
  let seen = 'nothing yet'
  try {
    return await waitUntil(what, () => check((text) => { seen = text }), timeoutMs, 100)
  } catch (error) {
    const tails = processes.map((process) => process.tail()).join('\n---\n')
    throw new Error(`${(error as Error).message}; last seen: ${seen}\n${tails}`)
  }
}

function runCli(args: string[], password: string | undefined): Promise<string> {
  const cli = spawn('redis-cli', args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...(password ? { REDISCLI_AUTH: password } : {}) } })
  let output = ''
  cli.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  cli.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => cli.kill('SIGKILL'), STARTUP_MS)
    cli.once('error', reject)
    cli.once('exit', (code, signal) => {
      clearTimeout(timer)
      if (code === 0) resolve(output)
      else reject(new Error(`redis-cli ${args.slice(0, 2).join(' ')} failed (${code ?? signal}): ${output.slice(-1500)}`))
    })
  })
}

function passwordArgs(password: string | undefined): string[] {
  return password ? ['--requirepass', password, '--masterauth', password] : []
}

export interface ClusterPrimary {
  port: number
  id: string
  /** Inclusive ranges. */
  slots: [number, number][]
}

interface ClusterNodeLine extends ClusterPrimary {
  flags: string[]
  primaryId: string
  configEpoch: number
  connected: boolean
}

function parseClusterNodes(text: string): ClusterNodeLine[] {
  return text.trim().split('\n').map((line) => {
    const [id = '', address = '', flags = '', primaryId = '', , , epoch = '', link = '', ...slots] = line.trim().split(' ')
    return {
      id,
      port: Number(address.split('@')[0]!.split(':').pop()),
      flags: flags.split(','),
      primaryId,
      configEpoch: Number(epoch),
      connected: link === 'connected',
      slots: slots.filter((slot) => !slot.startsWith('[')).map((slot) => {
        const [from, to = from] = slot.split('-').map(Number) as [number, number?]
        return [from, to] as [number, number]
      })
    }
  })
}

const isServing = (line: ClusterNodeLine) => line.flags.includes('master') && !line.flags.some((flag) => flag.startsWith('fail')) && line.slots.length > 0
const serves = (primary: ClusterPrimary, slot: number) => primary.slots.some(([from, to]) => slot >= from && slot <= to)
const slotMap = (lines: ClusterNodeLine[]) => lines.filter(isServing).map((line) => `${line.port}:${line.slots.join(' ')}`).sort().join(', ')

export interface ClusterOptions {
  replicas?: 1
  /** Turns AOF on with this fsync policy; without it the nodes keep nothing on disk. */
  appendfsync?: 'always' | 'everysec' | 'no'
  /** Failure detection takes about this long, and failover about twice it. */
  nodeTimeoutMs?: number
  password?: string
}

export interface TestRedisCluster {
  nodes: TopologyNode[]
  /** `127.0.0.1:P,…`, as REDIS_CLUSTER_NODES takes it. */
  startupNodes: string
  password: string | undefined
  primaries(): Promise<ClusterPrimary[]>
  primaryForSlot(slot: number): Promise<ClusterPrimary>
  primaryForKey(key: string): Promise<ClusterPrimary>
  /** SIGKILLs the primary serving the key's slot and returns it (start() brings it back as a replica). */
  killPrimaryOf(key: string): Promise<TopologyNode>
  /** Resolves with the primary now serving the slots `killedPort` served, once every surviving node agrees and says cluster_state:ok. */
  waitForFailover(killedPort: number, timeoutMs?: number): Promise<ClusterPrimary>
  stop(): Promise<void>
}

/** A real Redis Cluster of three primaries and three replicas on free ports of 127.0.0.1. */
export async function startRedisCluster(options: ClusterOptions = {}): Promise<TestRedisCluster> {
  const { password, nodeTimeoutMs = 1000 } = options
  const root = mkdtempSync(join(tmpdir(), 'persona-relay-cluster-'))
  const processes: RedisProcess[] = []
  const stop = async () => {
    await Promise.all(processes.map((node) => node.stop()))
    rmSync(root, { recursive: true, force: true })
  }
  const makeNode = async () => {
    const [port, busPort] = [await claimPort(), await claimPort()]
    const dir = join(root, `node-${port}`)
    mkdirSync(dir)
    // Any replica may take over however long it was cut off (validity factor 0), replicas stay where they were put,
    // and a replica's first sync starts at once instead of waiting 5 s for others to join it.
    return new RedisProcess(port, 'primary', ['--port', String(port), '--bind', HOST, '--dir', dir,
      '--cluster-enabled', 'yes', '--cluster-port', String(busPort), '--cluster-config-file', join(dir, 'nodes.conf'),
      '--cluster-node-timeout', String(nodeTimeoutMs), '--cluster-replica-validity-factor', '0',
      '--cluster-allow-replica-migration', 'no', '--repl-diskless-sync-delay', '0', '--save', '',
      '--appendonly', options.appendfsync ? 'yes' : 'no', ...(options.appendfsync ? ['--appendfsync', options.appendfsync] : []),
      '--maxmemory-policy', 'noeviction', ...passwordArgs(password)])
  }
  const clusterNodes = async (port: number) => parseClusterNodes(String(await ask(port, password, 'CLUSTER', 'NODES')))
  const knownSlots = new Map<number, [number, number][]>()

  // A node just restarted still believes its old nodes.conf: trust the view that knows the latest config epochs.
  const primaries = async () => {
    const views = await Promise.all(processes.filter((node) => node.running)
      .map((node) => clusterNodes(node.port).then((lines) => lines.filter(isServing)).catch(() => undefined)))
    const epochs = (view: ClusterNodeLine[]) => view.reduce((sum, line) => sum + line.configEpoch, 0)
    const newest = views.reduce((best, view) => view && (!best || epochs(view) > epochs(best)) ? view : best, undefined)
    if (!newest) throw new Error('no cluster node answers CLUSTER NODES')
    const serving = newest.map(({ port, id, slots }) => ({ port, id, slots }))
    for (const { port, slots } of serving) knownSlots.set(port, slots)
    return serving.sort((a, b) => a.slots[0]![0] - b.slots[0]![0])
  }
  const primaryForSlot = async (slot: number) => {
    const primary = (await primaries()).find((candidate) => serves(candidate, slot))
    if (!primary) throw new Error(`no primary serves slot ${slot}`)
    return primary
  }
  const keySlot = async (key: string) => {
    for (const node of processes.filter((process) => process.running)) {
      const slot = await tryAsk(node.port, password, 'CLUSTER', 'KEYSLOT', key)
      if (typeof slot === 'number') return slot
    }
    throw new Error('no cluster node answers CLUSTER KEYSLOT')
  }
  const nodeAt = (port: number) => processes.find((node) => node.port === port)!

  try {
    for (let index = 0; index < 6; index++) processes.push(await launch(makeNode))
    await runCli(['--cluster', 'create', ...processes.map((node) => `${HOST}:${node.port}`),
      '--cluster-replicas', String(options.replicas ?? 1), '--cluster-yes'], password)
    await settle('the cluster to cover every slot with every replica in sync', STARTUP_MS, processes, async (note) => {
      const views = await Promise.all(processes.map(async (node) => {
        const [info, lines, replication] = await Promise.all([tryAsk(node.port, password, 'CLUSTER', 'INFO'),
          clusterNodes(node.port).catch(() => [] as ClusterNodeLine[]), tryAsk(node.port, password, 'INFO', 'replication')])
        const myself = lines.find((line) => line.flags.includes('myself'))
        const healthy = infoField(info, 'cluster_state') === 'ok' && infoField(info, 'cluster_slots_ok') === String(SLOTS) &&
          lines.length === 6 && lines.filter(isServing).length === 3 && lines.filter((line) => line.flags.includes('slave')).length === 3 &&
          lines.every((line) => line.flags.includes('myself') || line.connected) &&
          (!myself?.flags.includes('slave') || infoField(replication, 'master_link_status') === 'up')
        return { port: node.port, healthy, map: slotMap(lines), role: myself?.flags.includes('slave') ? 'replica' as const : 'primary' as const }
      }))
      note(views.map((view) => `${view.port} ${view.healthy ? 'ok' : 'not ready'} [${view.map}]`).join('; '))
      const ready = views.every((view) => view.healthy && view.map === views[0]!.map)
      if (ready) for (const view of views) nodeAt(view.port).role = view.role
      return ready || undefined
    })
    await primaries()
  } catch (error) {
    await stop()
    throw error
  }

  return {
    nodes: processes,
    startupNodes: processes.map((node) => `${HOST}:${node.port}`).join(','),
    password,
    primaries,
    primaryForSlot,
    primaryForKey: async (key) => primaryForSlot(await keySlot(key)),
    killPrimaryOf: async (key) => {
      const node = nodeAt((await primaryForSlot(await keySlot(key))).port)
      await node.kill()
      return node
    },
    waitForFailover: async (killedPort, timeoutMs = 15_000) => {
      const formerSlot = knownSlots.get(killedPort)?.[0]?.[0]
      if (formerSlot === undefined) throw new Error(`${killedPort} was not a primary serving slots when last seen`)
      return settle(`another node to serve the slots of ${killedPort}`, timeoutMs, processes, async (note) => {
        const survivors = processes.filter((node) => node.running && node.port !== killedPort)
        const views = await Promise.all(survivors.map(async (node) => ({
          state: infoField(await tryAsk(node.port, password, 'CLUSTER', 'INFO'), 'cluster_state'),
          lines: await clusterNodes(node.port).catch(() => [] as ClusterNodeLine[])
        })))
        const owners = views.map(({ lines }) => lines.filter(isServing).find((line) => serves(line, formerSlot)))
        note(views.map(({ state }, index) => `${survivors[index]!.port}: ${state}, slot ${formerSlot} on ${owners[index]?.port}`).join('; '))
        const owner = owners[0]
        const agreed = owner && owner.port !== killedPort && views.every(({ state }, index) => state === 'ok' && owners[index]?.port === owner.port)
        if (!agreed) return undefined
        knownSlots.set(owner.port, owner.slots)
        knownSlots.delete(killedPort)
        return { port: owner.port, id: owner.id, slots: owner.slots }
      })
    },
    stop
  }
}

export interface SentinelOptions {
  name?: string
  password?: string
  downAfterMs?: number
  failoverTimeoutMs?: number
}

export interface TestRedisSentinel {
  name: string
  /** `127.0.0.1:P,…`, as REDIS_SENTINELS takes it. */
  sentinels: string
  password: string | undefined
  /** The primary and the replica, in the roles they started in. */
  nodes: TopologyNode[]
  sentinelNodes: TopologyNode[]
  /** The port of the primary, as the sentinels tell it. */
  primary(): Promise<number>
  /** SIGKILLs the current primary and returns its port. */
  killPrimary(): Promise<number>
  /** Resolves with the new primary's port once every running sentinel names it and it answers ROLE as master. */
  waitForFailover(oldPort: number, timeoutMs?: number): Promise<number>
  stop(): Promise<void>
}

/** One primary, one replica and three sentinels (quorum 2) on free ports of 127.0.0.1. */
export async function startRedisSentinel(options: SentinelOptions = {}): Promise<TestRedisSentinel> {
  const { name = 'persona', password, downAfterMs = 1000, failoverTimeoutMs = 5000 } = options
  const root = mkdtempSync(join(tmpdir(), 'persona-relay-sentinel-'))
  const data: RedisProcess[] = []
  const sentinels: RedisProcess[] = []
  const all = () => [...data, ...sentinels]
  const stop = async () => {
    await Promise.all(all().map((node) => node.stop()))
    rmSync(root, { recursive: true, force: true })
  }
  const dirFor = (port: number) => {
    const dir = join(root, String(port))
    mkdirSync(dir)
    return dir
  }
  const makeDataNode = (replicaOf?: number) => async () => {
    const port = await claimPort()
    return new RedisProcess(port, replicaOf ? 'replica' : 'primary', ['--port', String(port), '--bind', HOST, '--dir', dirFor(port),
      '--save', '', '--appendonly', 'no', '--repl-diskless-sync-delay', '0', '--maxmemory-policy', 'noeviction',
      ...passwordArgs(password), ...(replicaOf ? ['--replicaof', HOST, String(replicaOf)] : [])])
  }
  const makeSentinel = (primaryPort: number) => async () => {
    const port = await claimPort()
    const config = join(dirFor(port), 'sentinel.conf')
    writeFileSync(config, [`port ${port}`, `bind ${HOST}`, `dir ${join(root, String(port))}`,
      `sentinel monitor ${name} ${HOST} ${primaryPort} 2`, `sentinel down-after-milliseconds ${name} ${downAfterMs}`,
      `sentinel failover-timeout ${name} ${failoverTimeoutMs}`, `sentinel parallel-syncs ${name} 1`,
      ...(password ? [`sentinel auth-pass ${name} ${password}`] : []), ''].join('\n'))
    return new RedisProcess(port, 'sentinel', [config, '--sentinel'], '+monitor master')
  }
  const fields = (flat: unknown) => {
    const list = (flat ?? []) as string[]
    return Object.fromEntries(list.flatMap((value, index) => index % 2 ? [] : [[value, list[index + 1]]])) as Record<string, string | undefined>
  }
  const primaryAccordingTo = async (sentinel: RedisProcess) => {
    const address = await tryAsk(sentinel.port, undefined, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name) as [string, string] | null | undefined
    return address ? Number(address[1]) : undefined
  }
  const primary = async () => {
    for (const sentinel of sentinels.filter((node) => node.running)) {
      const port = await primaryAccordingTo(sentinel)
      if (port) return port
    }
    throw new Error(`no sentinel names a primary for ${name}`)
  }

  try {
    const first = await launch(makeDataNode())
    data.push(first)
    data.push(await launch(makeDataNode(first.port)))
    // Sentinels learn of replicas from the primary's INFO, every 10 s: start them once the replica is there to see.
    await settle('the replica to sync with its primary', STARTUP_MS, data, async (note) => {
      const link = infoField(await tryAsk(data[1]!.port, password, 'INFO', 'replication'), 'master_link_status')
      note(`master_link_status ${link}`)
      return link === 'up' || undefined
    })
    sentinels.push(...await Promise.all([1, 2, 3].map(() => launch(makeSentinel(first.port)))))
    await settle('every sentinel to see the primary, the replica and the other sentinels', STARTUP_MS, all(), async (note) => {
      const views = await Promise.all(sentinels.map(async (sentinel) => {
        const master = fields(await tryAsk(sentinel.port, undefined, 'SENTINEL', 'MASTER', name))
        const replicas = ((await tryAsk(sentinel.port, undefined, 'SENTINEL', 'REPLICAS', name) ?? []) as unknown[]).map(fields)
        return { port: sentinel.port, flags: master.flags, others: master['num-other-sentinels'],
          replicas: replicas.filter((replica) => replica.flags === 'slave' && replica['master-link-status'] === 'ok').length }
      }))
      note(views.map((view) => `${view.port}: ${view.flags}, ${view.others} other sentinels, ${view.replicas} replicas in sync`).join('; '))
      return views.every((view) => view.flags === 'master' && view.others === '2' && view.replicas === 1) || undefined
    })
  } catch (error) {
    await stop()
    throw error
  }

  return {
    name,
    sentinels: sentinels.map((node) => `${HOST}:${node.port}`).join(','),
    password,
    nodes: data,
    sentinelNodes: sentinels,
    primary,
    killPrimary: async () => {
      const port = await primary()
      await data.find((node) => node.port === port)!.kill()
      return port
    },
    waitForFailover: (oldPort, timeoutMs = 20_000) =>
      settle(`the sentinels to promote a primary other than ${oldPort}`, timeoutMs, all(), async (note) => {
        const named = await Promise.all(sentinels.filter((node) => node.running).map(primaryAccordingTo))
        const candidate = named[0]
        const role = candidate && candidate !== oldPort ? (await tryAsk(candidate, password, 'ROLE') as unknown[] | undefined)?.[0] : undefined
        note(`sentinels name ${named.join(', ')}; ${candidate} says it is ${role}`)
        return (named.every((port) => port === candidate) && role === 'master' && candidate) || undefined
      }),
    stop
  }
}
