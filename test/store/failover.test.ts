import t, { type Test } from 'tap'
import { startRedisCluster, startRedisSentinel, type TopologyNode } from '../helpers/redis-topology.js'
import type { RelayProcess } from '../helpers/relay-process.js'
import { startSubscriber } from '../helpers/subscriber.js'
import { awaitDelivery, FAST_DELIVERY, intakeKey, startTopologyRelay, WebhookLoad } from '../helpers/topology-load.js'
import { waitUntil } from '../helpers/wait-until.js'

// 60 a second for 8 s, the primary SIGKILLed a third of the way in.
const EVENTS = 480
const RATE = 60
const KILL_AFTER = 160
const AFTER_FAILOVER = 20

interface Killed {
  /** Where the killed primary's data is now served. */
  promotedPort: number
  node: TopologyNode
}

interface Topology {
  env: Record<string, string>
  /** SIGKILLs the primary under the load (a cluster's: intake partition 0's) and waits until a replica serves in its place. */
  killPrimary(): Promise<Killed>
  stop(): Promise<void>
}

async function cluster(): Promise<Topology> {
  // AOF with everysec, as managed Redis runs it: what survives the failover is what reached the replica.
  const cluster = await startRedisCluster({ appendfsync: 'everysec', nodeTimeoutMs: 1000 })
  return {
    env: { REDIS_CLUSTER_NODES: cluster.startupNodes },
    async killPrimary() {
      const node = await cluster.killPrimaryOf(intakeKey(0))
      return { node, promotedPort: (await cluster.waitForFailover(node.port, 20_000)).port }
    },
    stop: () => cluster.stop()
  }
}

async function sentinel(): Promise<Topology> {
  const sentinel = await startRedisSentinel()
  return {
    env: { REDIS_SENTINELS: sentinel.sentinels, REDIS_SENTINEL_NAME: sentinel.name },
    async killPrimary() {
      const port = await sentinel.killPrimary()
      return { node: sentinel.nodes.find((node) => node.port === port)!, promotedPort: await sentinel.waitForFailover(port, 30_000) }
    },
    stop: () => sentinel.stop()
  }
}

function relayFailures(relay: RelayProcess) {
  return {
    crossSlot: `${relay.stdout()}${relay.stderr()}`.split('CROSSSLOT').length - 1,
    serverErrors: relay.logs().filter((line) => line.msg === 'intake' && Number(line.statusCode) >= 500 && line.statusCode !== 503).length
  }
}

async function failoverUnderLoad(t: Test, start: () => Promise<Topology>, waitReplicas: 0 | 1) {
  const startedAt = Date.now()
  const topology = await start()
  t.teardown(() => topology.stop())
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const relay = await startTopologyRelay(t, 'relay', topology.env, {
    ...FAST_DELIVERY,
    SUBSCRIBER_ALL_URL: subscriber.url,
    SUBSCRIBER_ALL_EVENTS: '*',
    REDIS_WAIT_REPLICAS: String(waitReplicas),
    REDIS_WAIT_TIMEOUT_MS: '500'
  })
  const load = new WebhookLoad(relay.baseUrl, `${Date.now().toString(36)}w${waitReplicas}`)
  t.teardown(() => load.close())
  t.comment(`topology and relay ready in ${Date.now() - startedAt} ms`)

  const running = load.run({ count: EVENTS, ratePerSecond: RATE })
  await waitUntil('the load to get going', () => load.sent >= KILL_AFTER, 30_000, 20)
  const killedAt = Date.now()
  const { node, promotedPort } = await topology.killPrimary()
  t.comment(`primary ${node.port} SIGKILLed, ${promotedPort} serving in its place ${Date.now() - killedAt} ms later`)
  if (waitReplicas > 0) {
    // The promoted primary has no replica until the killed node is back as one: no WAIT confirms meanwhile.
    await waitUntil('a 503 REPLICAS_UNCONFIRMED from the promoted primary', () => load.count('503 REPLICAS_UNCONFIRMED') > 0, 15_000, 20)
  }
  await node.start()
  t.comment(`killed node restarted (it rejoins as a replica) ${Date.now() - killedAt} ms after the kill`)
  await running

  const tally = await awaitDelivery(load, subscriber, waitReplicas > 0 ? 45_000 : 25_000)
  const unacknowledged = load.events.filter((event) => event.ackAt === undefined)
  const retried = load.events.filter((event) => event.answers.length > 1).length
  const since = (at: number | undefined) => (at === undefined ? 'never' : `${at - killedAt} ms`)
  t.comment(`refusals from ${since(load.refusedFrom)} to ${since(load.refusedUntil)} after the kill`)
  t.comment(`WAIT ${waitReplicas}: sent ${tally.sent}, answers ${load.summary()}, ${retried} events retried, acknowledged ${tally.acknowledged}, ` +
    `delivered ${tally.delivered}, lost ${tally.lost.length}${tally.lost.length ? ` (${tally.lost.slice(0, 5).join(', ')})` : ''}, duplicates delivered ${tally.duplicates}`)
  t.same(load.unexpectedAnswers(), [], 'intake answered only 200 or 503 throughout')
  t.same(unacknowledged.map((event) => `${event.id}: ${event.answers.slice(-3).join(',')}`), [], 'every event got its 200 once retried')
  if (waitReplicas > 0) {
    t.same(tally.lost, [], 'every acknowledged event is delivered')
    const unconfirmed = load.events.filter((event) => event.answers.includes('503 REPLICAS_UNCONFIRMED'))
    t.ok(unconfirmed.length > 0 && unconfirmed.every((event) => event.answers.at(-1) === '200 duplicate'),
      `the ${unconfirmed.length} events refused as unconfirmed were recorded, and acknowledged as duplicates once a replica confirmed them`)
  }

  // The relay keeps working on the promoted primary.
  const before = load.sent
  await load.run({ count: AFTER_FAILOVER, ratePerSecond: 20, retryForMs: 20_000 })
  const after = load.events.slice(before)
  t.equal(after.filter((event) => event.ackAt !== undefined).length, AFTER_FAILOVER, 'events sent after the failover are acknowledged')
  const final = await awaitDelivery(load, subscriber, 20_000)
  t.same(after.filter((event) => final.lost.includes(event.id)).map((event) => event.id), [], 'and delivered')

  const { crossSlot, serverErrors } = relayFailures(relay)
  t.equal(serverErrors, 0, 'the relay logged no intake answer 5xx other than 503')
  t.equal(crossSlot, 0, 'and no CROSSSLOT error')
  t.comment(`run took ${Date.now() - startedAt} ms`)
}

t.test('Cluster, REDIS_WAIT_REPLICAS=1: a primary SIGKILLed mid-load loses nothing acknowledged', (t) => failoverUnderLoad(t, cluster, 1))

t.test('Cluster, REDIS_WAIT_REPLICAS=0: a primary SIGKILLed mid-load, what is lost is measured', (t) => failoverUnderLoad(t, cluster, 0))

t.test('Sentinel, REDIS_WAIT_REPLICAS=1: the primary SIGKILLed mid-load loses nothing acknowledged', (t) => failoverUnderLoad(t, sentinel, 1))

t.test('Sentinel, REDIS_WAIT_REPLICAS=0: the primary SIGKILLed mid-load, what is lost is measured', (t) => failoverUnderLoad(t, sentinel, 0))
