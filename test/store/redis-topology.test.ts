import t from 'tap'
import { Cluster, Redis } from 'ioredis'
import { ask, startRedisCluster, startRedisSentinel, type TestRedisCluster } from '../helpers/redis-topology.js'
import { waitUntil } from '../helpers/wait-until.js'

const hostPorts = (list: string) => list.split(',').map((address) => ({ host: '127.0.0.1', port: Number(address.split(':')[1]) }))
const keys = Array.from({ length: 24 }, (_, index) => `{tenant-${index}}:event`)

function clusterClient(cluster: TestRedisCluster, password = cluster.password): Cluster {
  const client = new Cluster(hostPorts(cluster.startupNodes), {
    redisOptions: { password, connectTimeout: 1000 }, retryDelayOnFailover: 100, retryDelayOnClusterDown: 100, slotsRefreshTimeout: 1000
  })
  client.on('error', () => undefined)
  return client
}

/** Retries what a client does until it works: a client is told of a failover only by its failing commands. */
function eventually<T>(what: string, action: () => Promise<T>, timeoutMs = 10_000): Promise<T> {
  return waitUntil(what, () => action().catch(() => undefined), timeoutMs, 100)
}

t.test('a Redis Cluster of three primaries and three replicas', async (t) => {
  let started = Date.now()
  const cluster = await startRedisCluster()
  t.teardown(() => cluster.stop())
  t.comment(`cluster ready in ${Date.now() - started} ms`)
  const primaries = await cluster.primaries()
  t.equal(primaries.length, 3, 'three primaries')
  t.ok(primaries.every((primary) => primary.slots.length > 0), 'each owns slots')
  t.equal(primaries.flatMap((primary) => primary.slots).reduce((sum, [from, to]) => sum + to - from + 1, 0), 16_384, 'together all of them')
  t.same(cluster.nodes.map((node) => node.role).sort(), ['primary', 'primary', 'primary', 'replica', 'replica', 'replica'], 'and three replicas')

  const client = clusterClient(cluster)
  t.teardown(() => client.disconnect())
  await Promise.all(keys.map((key) => client.set(key, key)))
  const owners = await Promise.all(keys.map(async (key) => (await cluster.primaryForKey(key)).port))
  t.equal(new Set(owners).size, 3, 'the hash-tagged keys fall on every primary')
  t.same(await Promise.all(keys.map((key) => client.get(key))), keys, 'and read back')

  const key = keys[0]!
  started = Date.now()
  const killed = await cluster.killPrimaryOf(key)
  t.equal(killed.port, owners[0], 'the primary of the key was killed')
  const promoted = await cluster.waitForFailover(killed.port, 15_000)
  const failoverMs = Date.now() - started
  t.comment(`failover in ${failoverMs} ms`)
  t.not(promoted.port, killed.port, 'another node serves the slots')
  t.equal(cluster.nodes.find((node) => node.port === promoted.port)?.role, 'replica', 'a replica took over')
  t.equal((await cluster.primaryForKey(key)).port, promoted.port, 'and the key')

  started = Date.now()
  await eventually('the cluster client to write after the failover', () => client.set(key, 'after'))
  t.comment(`client wrote again ${Date.now() - started} ms after the failover`)
  t.equal(await client.get(key), 'after', 'and reads back what it wrote')
  t.equal(await client.get(keys[1]!), keys[1], 'keys of the other primaries are untouched')

  started = Date.now()
  await killed.start()
  t.equal((await cluster.primaryForKey(key)).port, promoted.port, 'the restarted node does not take its slots back')
  await waitUntil('the restarted node to rejoin as a replica', async () => {
    const role = await ask(killed.port, undefined, 'ROLE').catch(() => undefined) as unknown[] | undefined
    return role?.[0] === 'slave' && role[1] === '127.0.0.1' && role[2] === promoted.port
  }, 10_000, 100)
  t.comment(`the killed node rejoined as a replica in ${Date.now() - started} ms`)
  t.pass('the killed primary comes back as a replica of its successor')
})

t.test('a password-protected Redis Cluster', async (t) => {
  const cluster = await startRedisCluster({ password: 'cluster-secret' })
  t.teardown(() => cluster.stop())
  const client = clusterClient(cluster)
  t.teardown(() => client.disconnect())
  await Promise.all(keys.map((key) => client.set(key, key)))
  t.same(await Promise.all(keys.map((key) => client.get(key))), keys, 'a client with the password writes to every slot')
  await t.rejects(ask(cluster.nodes[0]!.port, undefined, 'GET', keys[0]!), /NOAUTH/, 'one without it is refused')
})

for (const password of [undefined, 'sentinel-secret']) {
  t.test(`Redis Sentinel${password ? ' with a password' : ''}: a primary, a replica and three sentinels`, async (t) => {
    let started = Date.now()
    const sentinel = await startRedisSentinel({ password })
    t.teardown(() => sentinel.stop())
    t.comment(`sentinel topology ready in ${Date.now() - started} ms`)
    const [primary, replica] = sentinel.nodes
    t.equal(await sentinel.primary(), primary!.port, 'the sentinels name the primary')

    const client = new Redis({ sentinels: hostPorts(sentinel.sentinels), name: sentinel.name, password })
    client.on('error', () => undefined)
    t.teardown(() => client.disconnect())
    await client.set('event', 'before')
    t.equal(await client.get('event'), 'before', 'a client through the sentinels writes to the primary')
    if (password) await t.rejects(ask(primary!.port, undefined, 'GET', 'event'), /NOAUTH/, 'a client without the password is refused')

    started = Date.now()
    t.equal(await sentinel.killPrimary(), primary!.port, 'the primary was killed')
    const promoted = await sentinel.waitForFailover(primary!.port, 20_000)
    t.comment(`failover in ${Date.now() - started} ms`)
    t.equal(promoted, replica!.port, 'the replica was promoted')

    started = Date.now()
    await eventually('the sentinel client to write to the new primary', () => client.set('event', 'after'))
    t.comment(`client wrote again ${Date.now() - started} ms after the failover`)
    t.equal(await client.get('event'), 'after', 'and reads it back')
    t.equal(await ask(promoted, password, 'GET', 'event'), 'after', 'the write landed on the promoted node')
  })
}
