import type { ClusterShapeResult, CpuWindow, TopologyRound, WaitRound } from './cluster.js'
import { TOPOLOGY_NAMES, type TopologyKind } from './topologies.js'

export const CLUSTER_HEADING = '## Redis Cluster vs. one node'
const TARGET = 0.75

const mean = (values: number[]) => values.reduce((sum, value) => sum + value, 0) / Math.max(1, values.length)
const int = (value: number) => Math.round(value).toLocaleString('en-US')
const pct = (fraction: number) => `${(100 * fraction).toFixed(0)} %`
const ms = (value: number | null | undefined) => value === null || value === undefined ? 'n/a' : value.toFixed(1)
const verdict = (met: boolean) => met ? '**met**' : '**not met**'
/** Mean, and the lowest and highest round, as "0.91× (0.88–0.95)". */
const spread = (values: number[], digits = 2, unit = '×') => values.length < 2
  ? `${mean(values).toFixed(digits)}${unit}`
  : `${mean(values).toFixed(digits)}${unit} (${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)})`
const rounds = (count: number) => `${count} round${count === 1 ? '' : 's'}`
const processes = (kind: TopologyKind) => ({ single: 1, 'single-partitioned': 1, cluster: 3, 'cluster-replicas': 6 })[kind]

/** Share of one core a group of processes used in a window. */
const core = (cpu: CpuWindow, used: number) => used / cpu.wallMs

interface Side { kind: TopologyKind; rounds: TopologyRound[] }

function sides(result: ClusterShapeResult): Side[] {
  return result.settings.topologies.map((kind) => ({ kind, rounds: result.rounds.filter((round) => round.kind === kind).sort((a, b) => a.round - b.round) }))
}

/** Per round, this side's value ÷ the one node's in the same round. */
function ratios(side: Side, single: Side, value: (round: TopologyRound) => number): number[] {
  return side.rounds.map((round) => value(round) / value(single.rounds.find((other) => other.round === round.round)!))
}

const intakeRps = (round: TopologyRound) => round.intake.rps
const endToEnd = (round: TopologyRound) => round.throughput.perSecond
const relayPerRequest = (round: TopologyRound) => 1000 * round.intakeCpu.relay / round.intake.total
const relayPerEvent = (round: TopologyRound) => 1000 * round.totalCpu.relay / round.throughput.accepted
const redisPerEvent = (round: TopologyRound, cpu: CpuWindow, events: number) => 1000 * (cpu.primaries + cpu.replicas) / events

function topologySections(result: ClusterShapeResult): string[] {
  const { settings } = result
  const all = sides(result)
  const single = all.find((side) => side.kind === 'single')!
  const clusters = all.filter((side) => side.kind === 'cluster' || side.kind === 'cluster-replicas')
  const lines: string[] = []
  const push = (...text: string[]) => lines.push(...text)

  push(`ROLE=all, three subscribers answering at once, every Redis node with persistence \`${settings.persistence}\`. ` +
    `${rounds(settings.rounds)}; each round measures every topology once, the order rotating from round to round, each on a freshly started ` +
    `topology and relay. In each: a ${settings.warmupSeconds} s warm-up burst, delivered and discarded, then autocannon's closed loop at 50 connections ` +
    `for ${settings.intakeSeconds} s (intake req/s), then the wait until every accepted event reached all three subscribers ` +
    '(end-to-end: accepted ÷ time from the first request to the last delivery, as in "Sustained end-to-end throughput"). ' +
    'The relay on the cluster has `REDIS_CLUSTER_NODES` and the default 16 intake partitions; on one node, `REDIS_URL` and 1 partition' +
    `${all.some((side) => side.kind === 'single-partitioned') ? ', or 16 (`INTAKE_PARTITIONS=16`: the cluster\'s layout on one node, to tell what partitioning costs from what the cluster does)' : ''}. ` +
    'Ratios are taken round by round against the one node in the same round: mean (lowest–highest).', '',
    '| Redis | Processes | Intake req/s, per round | Intake × one node | End-to-end events/s, per round | End-to-end × one node | Delivered during the burst |',
    '|---|---|---|---|---|---|---|')
  for (const side of all) {
    const isSingle = side.kind === 'single'
    push(`| ${TOPOLOGY_NAMES[side.kind]} | ${processes(side.kind)} | ${side.rounds.map((round) => int(intakeRps(round))).join(' / ')} | ` +
      `${isSingle ? '1.00×' : spread(ratios(side, single, intakeRps))} | ${side.rounds.map((round) => int(endToEnd(round))).join(' / ')} | ` +
      `${isSingle ? '1.00×' : spread(ratios(side, single, endToEnd))} | ` +
      `${pct(mean(side.rounds.map((round) => round.throughput.duringBurst / round.throughput.accepted)))} |`)
  }
  const changed = result.rounds.filter((round) => !round.unchanged || !round.throughput.complete)
  push('', changed.length === 0
    ? 'Every round delivered every accepted event, and no node changed role (no failover) in any round.'
    : `**Not clean:** ${changed.map((round) => `round ${round.round} on ${TOPOLOGY_NAMES[round.kind]}${round.unchanged ? '' : ' saw a node change role'}` +
      `${round.throughput.complete ? '' : ' hit the drain deadline'}`).join('; ')}.`, '')

  push(`Target: cluster ≥ ${TARGET}× one node's throughput.`, '', '| Cluster | Intake | End-to-end |', '|---|---|---|')
  for (const side of clusters) {
    const [intake, delivered] = [mean(ratios(side, single, intakeRps)), mean(ratios(side, single, endToEnd))]
    push(`| ${TOPOLOGY_NAMES[side.kind]} | ${intake.toFixed(2)}× ${verdict(intake >= TARGET)} | ${delivered.toFixed(2)}× ${verdict(delivered >= TARGET)} |`)
  }
  push('')

  push('### Where the CPU went', '',
    'CPU time of each group of processes (user + system from /proc/<pid>/stat, 10 ms ticks) over a window, as a share of one core, ' +
    'and the whole machine\'s busy share of its cores (/proc/stat; steal, the hypervisor\'s, apart), means over the rounds. "Harness" is the subscribers\' process and the load generator. ' +
    'Per request and per event: that CPU ÷ requests answered, or ÷ events accepted (each delivered to three subscribers); Redis is primaries and replicas together. ' +
    '"Relay-bound ×" is the one node\'s relay CPU per request (or per event) ÷ this topology\'s: the throughput ratio to expect if the relay, ' +
    'not the cores it shares with Redis, were the limit.', '',
    '| Window | Redis | Machine busy, steal | Relay, of a core | Redis primaries | Redis replicas | Harness | Relay µs per request or event | Redis µs per request or event | Relay-bound × |',
    '|---|---|---|---|---|---|---|---|---|---|')
  const windows = [
    ['closed-loop intake', (round: TopologyRound) => round.intakeCpu, relayPerRequest, (round: TopologyRound) => round.intake.total],
    ['intake and drain', (round: TopologyRound) => round.totalCpu, relayPerEvent, (round: TopologyRound) => round.throughput.accepted]
  ] as const
  for (const [label, window, relayCost, count] of windows) {
    for (const side of all) {
      const of = (pick: (cpu: CpuWindow) => number) => pct(mean(side.rounds.map((round) => core(window(round), pick(window(round))))))
      const relayMicros = mean(side.rounds.map(relayCost))
      push(`| ${label} | ${TOPOLOGY_NAMES[side.kind]} | ${pct(mean(side.rounds.map((round) => window(round).machineBusy)))}, ` +
        `${pct(mean(side.rounds.map((round) => window(round).machineSteal)))} | ` +
        `${of((cpu) => cpu.relay)} | ${of((cpu) => cpu.primaries)} | ${side.kind === 'cluster-replicas' ? of((cpu) => cpu.replicas) : '–'} | ${of((cpu) => cpu.harness)} | ` +
        `${int(relayMicros)} | ${int(mean(side.rounds.map((round) => redisPerEvent(round, window(round), count(round)))))} | ` +
        `${side.kind === 'single' ? '1.00×' : spread(ratios(side, single, (round) => 1 / relayCost(round)))} |`)
    }
  }
  push('')
  return lines
}

function waitSection(result: ClusterShapeResult): string[] {
  const { settings } = result
  const { rates, pacedSeconds, closedLoopSeconds } = settings.wait
  const [off, on] = ([0, 1] as const).map((replicas) => result.wait.filter((round) => round.replicas === replicas).sort((a, b) => a.round - b.round)) as [WaitRound[], WaitRound[]]
  const answer = (round: WaitRound, rate: number, pick: 'answerP50' | 'answerP99') => round.paced.find((run) => run.rate === rate)?.[pick] ?? NaN
  const lines: string[] = ['## What REDIS_WAIT_REPLICAS=1 costs at intake', '',
    `One primary and one replica of it (both \`${settings.persistence}\`), a ROLE=all relay with \`REDIS_WAIT_REPLICAS=0\` or \`1\` ` +
    `(\`REDIS_WAIT_TIMEOUT_MS\` at its default), three subscribers answering at once. ${rounds(settings.wait.rounds)}, each measuring both settings, ` +
    'the order alternating, each on a fresh pair and relay: paced (open-loop) senders at ' +
    `${rates.map((rate) => `${rate}/s`).join(' and ')} for ${pacedSeconds} s each (the time until Persona has its answer, over every request), ` +
    `then autocannon's closed loop at 50 connections for ${closedLoopSeconds} s. Per round, then the difference (or ratio) of \`1\` against \`0\` ` +
    'in the same round: mean (lowest–highest).', '']
  const header = ['Round', 'REDIS_WAIT_REPLICAS', ...rates.flatMap((rate) => [`p50 ms at ${rate}/s`, `p99 ms at ${rate}/s`]), 'Closed loop req/s',
    'Closed loop p50 / p99 ms', 'Non-2xx', 'Relay µs per request', 'Primary, replica: of a core', 'Machine busy, steal']
  lines.push(`| ${header.join(' | ')} |`, `|${'---|'.repeat(header.length)}`)
  for (const round of [...off, ...on].sort((a, b) => a.round - b.round || a.replicas - b.replicas)) {
    const { closedLoop: run } = round
    const failed = run.non2xx + run.errors + round.paced.reduce((sum, paced) => sum + paced.failed, 0)
    lines.push(`| ${round.round} | ${round.replicas} | ${rates.flatMap((rate) => [ms(answer(round, rate, 'answerP50')), ms(answer(round, rate, 'answerP99'))]).join(' | ')} | ` +
      `${int(run.rps)} | ${run.p50} / ${run.p99} | ${failed} | ${int(1000 * run.cpu.relay / run.total)} | ` +
      `${pct(core(run.cpu, run.cpu.primaries))}, ${pct(core(run.cpu, run.cpu.replicas))} | ${pct(run.cpu.machineBusy)}, ${pct(run.cpu.machineSteal)} |`)
  }
  const paired = (value: (round: WaitRound) => number, combine: (a: number, b: number) => number) =>
    on.map((round) => combine(value(round), value(off.find((other) => other.round === round.round)!)))
  const minus = (a: number, b: number) => a - b
  const plus = (value: number) => `${value >= 0 ? '+' : '−'}${Math.abs(value).toFixed(1)}`
  const signed = (values: number[]) => values.length < 2 ? `${plus(mean(values))} ms`
    : `${plus(mean(values))} ms (${plus(Math.min(...values))} to ${plus(Math.max(...values))})`
  lines.push('', `What \`1\` costs against \`0\`, round by round: ` +
    rates.map((rate) => `at ${rate}/s p50 ${signed(paired((round) => answer(round, rate, 'answerP50'), minus))}, ` +
      `p99 ${signed(paired((round) => answer(round, rate, 'answerP99'), minus))}`).join('; ') +
    `; closed-loop throughput ${spread(paired((round) => round.closedLoop.rps, (a, b) => a / b))}` +
    `${[...off, ...on].every((round) => round.linked) ? '' : ' (**the replica lost its link in a round**)'}.`, '')
  return lines
}

/** The cluster shape's sections of BENCHMARKS.md; `standalone` when they come from a run of their own. */
export function clusterSections(result: ClusterShapeResult, standalone: boolean): string[] {
  return [CLUSTER_HEADING, '',
    ...(standalone ? [`Measured by \`npm run bench -- --shape cluster\` on ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC in ` +
      `${result.wallSeconds.toFixed(0)} s, a run of its own (the sections above come from the run named at the top).`, ''] : []),
    ...topologySections(result), ...waitSection(result)]
}

/**
 * BENCHMARKS.md with the cluster shape's sections (and the generated "How to reproduce" after them)
 * replaced, or put before "How to reproduce" the first time; the rest of the file is left as it was.
 */
export function spliceClusterSections(previous: string, sections: string[], reproduce: string[], interpretation: string): string {
  const start = [previous.indexOf(CLUSTER_HEADING), previous.indexOf(reproduce[0]!)].filter((index) => index >= 0).sort((a, b) => a - b)[0]
  const end = previous.indexOf(interpretation)
  if (start === undefined || end < start) throw new Error(`BENCHMARKS.md has no "${reproduce[0]}" before "${interpretation}": run the full bench first`)
  return `${previous.slice(0, start)}${[...sections, ...reproduce].join('\n')}\n${previous.slice(end)}`
}
