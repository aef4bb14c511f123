import { blast, paced, type LoadResult, type PacedResult } from './load.js'
import { cpuMs, machineTicks, startRelay, type Persistence } from './processes.js'
import { burstThenDrain, relayEnvFor, settled, warmUp, type Burst, type Subscribers } from './scenario.js'
import { startReplicatedPair, startTopology, TOPOLOGY_NAMES, type TopologyKind } from './topologies.js'

export interface ClusterSettings {
  rounds: number
  topologies: TopologyKind[]
  persistence: Persistence
  warmupSeconds: number
  intakeSeconds: number
  drainDeadlineMs: number
  wait: { rounds: number; rates: number[]; pacedSeconds: number; closedLoopSeconds: number }
}

/** CPU used in a window, in ms per group of processes, and the busy share of all the machine's cores. */
export interface CpuWindow {
  wallMs: number
  relay: number
  primaries: number
  replicas: number
  /** The subscribers' process and this one (the load generator). */
  harness: number
  /** Shares of all the machine's cores: busy, and taken by the hypervisor (steal). */
  machineBusy: number
  machineSteal: number
}

type Pids = Record<Exclude<keyof CpuWindow, 'wallMs' | 'machineBusy' | 'machineSteal'>, number[]>

/** Starts reading CPU now; the returned function reads the window up to its call. */
function cpuMeter(pids: Pids): () => CpuWindow {
  const read = () => ({ at: performance.now(), machine: machineTicks(),
    ms: Object.fromEntries(Object.entries(pids).map(([name, list]) => [name, list.reduce((sum, pid) => sum + cpuMs(pid), 0)])) })
  const start = read()
  return () => {
    const end = read()
    const used = (name: keyof Pids) => end.ms[name]! - start.ms[name]!
    const share = (name: 'busy' | 'steal') => (end.machine[name] - start.machine[name]) / Math.max(1, end.machine.total - start.machine.total)
    return { wallMs: end.at - start.at, relay: used('relay'), primaries: used('primaries'), replicas: used('replicas'), harness: used('harness'),
      machineBusy: share('busy'), machineSteal: share('steal') }
  }
}

export interface TopologyRound extends Burst {
  kind: TopologyKind
  round: number
  /** During the closed-loop intake, and from its start until the last event reached all three subscribers. */
  intakeCpu: CpuWindow
  totalCpu: CpuWindow
  /** No failover or lost replica link during the round. */
  unchanged: boolean
}

export interface WaitRound {
  replicas: 0 | 1
  round: number
  paced: (PacedResult & { rate: number })[]
  closedLoop: LoadResult & { cpu: CpuWindow }
  linked: boolean
}

export interface ClusterShapeResult {
  settings: ClusterSettings
  rounds: TopologyRound[]
  wait: WaitRound[]
  wallSeconds: number
}

/** Round r starts at the r-th side, so that no side is always first (or always after the same one). */
const rotated = <T>(sides: T[], round: number) => sides.map((_, index) => sides[(index + round) % sides.length]!)

async function measureTopology(kind: TopologyKind, round: number, subscribers: Subscribers, subscribersPid: number,
  settings: ClusterSettings): Promise<TopologyRound> {
  const topology = await startTopology(kind, settings.persistence)
  try {
    const relay = await startRelay(relayEnvFor(topology.env, subscribers, 'all'))
    try {
      await warmUp(relay.baseUrl, subscribers, settings)
      const pids: Pids = { relay: [relay.pid], ...topology.pids, harness: [subscribersPid, process.pid] }
      const total = cpuMeter(pids)
      const intake = cpuMeter(pids)
      let intakeCpu: CpuWindow | undefined
      const burst = await burstThenDrain(relay.baseUrl, subscribers, settings, () => { intakeCpu = intake() })
      return { kind, round, ...burst, intakeCpu: intakeCpu!, totalCpu: total(), unchanged: await topology.unchanged() }
    } finally {
      await relay.stop()
    }
  } finally {
    await topology.stop()
  }
}

async function measureWait(replicas: 0 | 1, round: number, subscribers: Subscribers, subscribersPid: number,
  settings: ClusterSettings): Promise<WaitRound> {
  const { rates, pacedSeconds, closedLoopSeconds } = settings.wait
  const pair = await startReplicatedPair(settings.persistence)
  try {
    const relay = await startRelay({ ...relayEnvFor({ REDIS_URL: pair.url }, subscribers, 'all'), REDIS_WAIT_REPLICAS: String(replicas) })
    try {
      await paced(relay.baseUrl, Math.max(...rates), Math.min(2, pacedSeconds))
      await settled(subscribers)
      const results: WaitRound['paced'] = []
      for (const rate of rates) {
        results.push({ rate, ...await paced(relay.baseUrl, rate, pacedSeconds) })
        await settled(subscribers)
      }
      const meter = cpuMeter({ relay: [relay.pid], primaries: [pair.pids.primary], replicas: [pair.pids.replica], harness: [subscribersPid, process.pid] })
      const closedLoop = await blast(relay.baseUrl, { seconds: closedLoopSeconds })
      const cpu = meter()
      return { replicas, round, paced: results, closedLoop: { ...closedLoop, cpu }, linked: await pair.linked() }
    } finally {
      // The closed loop's backlog is of no interest: no drain, no graceful shutdown.
      await relay.kill()
    }
  } finally {
    await pair.stop()
  }
}

/**
 * The cluster shape: ROLE=all on one Redis node against a 3-primary cluster (with and without a
 * replica per primary), in alternating rounds, each on a fresh topology and relay; then
 * REDIS_WAIT_REPLICAS=0 against 1 on a primary with one replica, alternating too.
 */
export async function measureClusterShape(subscribers: Subscribers, subscribersPid: number, settings: ClusterSettings,
  log: (text: string) => void): Promise<ClusterShapeResult> {
  const startedAt = Date.now()
  const rounds: TopologyRound[] = []
  for (let round = 1; round <= settings.rounds; round++) {
    for (const kind of rotated(settings.topologies, round - 1)) {
      const result = await measureTopology(kind, round, subscribers, subscribersPid, settings)
      rounds.push(result)
      log(`  cluster shape, round ${round}, ${TOPOLOGY_NAMES[kind]}: intake ${result.intake.rps.toFixed(0)} req/s, ` +
        `end-to-end ${result.throughput.perSecond.toFixed(0)} events/s, machine ${(100 * result.intakeCpu.machineBusy).toFixed(0)} % busy` +
        `${result.unchanged ? '' : ' (TOPOLOGY CHANGED during the round)'}`)
    }
  }
  const wait: WaitRound[] = []
  for (let round = 1; round <= settings.wait.rounds; round++) {
    for (const replicas of rotated([0, 1] as const, round - 1)) {
      const result = await measureWait(replicas, round, subscribers, subscribersPid, settings)
      wait.push(result)
      log(`  REDIS_WAIT_REPLICAS=${replicas}, round ${round}: ` +
        result.paced.map((run) => `${run.rate}/s p50 ${run.answerP50?.toFixed(1)} p99 ${run.answerP99?.toFixed(1)} ms`).join(', ') +
        `, closed loop ${result.closedLoop.rps.toFixed(0)} req/s (${result.closedLoop.non2xx} non-2xx)`)
    }
  }
  return { settings, rounds, wait, wallSeconds: (Date.now() - startedAt) / 1000 }
}
