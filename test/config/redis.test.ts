import t from 'tap'
import { ConfigError, loadConfig } from '../../src/config/index.js'

const SECRET = 'wbhsec_11111111-2222-3333-4444-555555555555'

function redisOf(env: Record<string, string>) {
  return loadConfig({ PERSONA_WEBHOOK_SECRET: SECRET, ...env }).redis
}

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig({ PERSONA_WEBHOOK_SECRET: SECRET, ...env })
  } catch (error) {
    if (error instanceof ConfigError) return error.problems
    throw error
  }
  throw new Error('loadConfig accepted an invalid environment')
}

t.test('each mode from its own variable, with the layout it implies', async (t) => {
  const cases: [string, Record<string, string>, Partial<ReturnType<typeof redisOf>>][] = [
    ['one node by default', {}, {
      topology: { mode: 'single', url: 'redis://127.0.0.1:6379' },
      layout: { prefix: 'persona-relay', partitions: 1, tagged: false }
    }],
    ['one node over TLS, with its own CA', { REDIS_URL: 'rediss://redis.internal:6380', REDIS_TLS_CA_FILE: '/etc/ca.pem' }, {
      topology: { mode: 'single', url: 'rediss://redis.internal:6380' },
      tls: { caFile: '/etc/ca.pem' }
    }],
    ['one node split into partitions is tagged', { REDIS_URL: 'redis://r:6379', INTAKE_PARTITIONS: '4' }, {
      layout: { prefix: 'persona-relay', partitions: 4, tagged: true }
    }],
    ['a cluster, 16 partitions by default', { REDIS_CLUSTER_NODES: 'a.internal:7000, b.internal:7001', REDIS_PASSWORD: 'pw', REDIS_TLS: 'true' }, {
      topology: { mode: 'cluster', nodes: [{ host: 'a.internal', port: 7000 }, { host: 'b.internal', port: 7001 }] },
      password: 'pw',
      tls: { caFile: undefined },
      layout: { prefix: 'persona-relay', partitions: 16, tagged: true }
    }],
    ['a cluster of one partition is still tagged', { REDIS_CLUSTER_NODES: 'a:7000', INTAKE_PARTITIONS: '1', REDIS_PREFIX: 'tenant-a' }, {
      layout: { prefix: 'tenant-a', partitions: 1, tagged: true }
    }],
    ['sentinels, with credentials of their own', {
      REDIS_SENTINELS: 's1:26379,s2:26379', REDIS_SENTINEL_NAME: 'persona', REDIS_USERNAME: 'relay', REDIS_PASSWORD: 'pw',
      REDIS_SENTINEL_USERNAME: 'watcher', REDIS_SENTINEL_PASSWORD: 'spw'
    }, {
      topology: {
        mode: 'sentinel', sentinels: [{ host: 's1', port: 26379 }, { host: 's2', port: 26379 }], name: 'persona',
        sentinelUsername: 'watcher', sentinelPassword: 'spw'
      },
      username: 'relay',
      password: 'pw',
      layout: { prefix: 'persona-relay', partitions: 1, tagged: false }
    }],
    ['replica confirmations', { REDIS_WAIT_REPLICAS: '1', REDIS_WAIT_TIMEOUT_MS: '250' }, { waitReplicas: 1, waitTimeoutMs: 250 }]
  ]
  for (const [name, env, expected] of cases) t.match(redisOf(env), expected, name)
  t.equal(redisOf({}).waitReplicas, 0, 'no replica is waited for by default')
})

t.test('a mode set twice, or a setting of another mode, is a clear error', async (t) => {
  const cases: [string, Record<string, string>, RegExp][] = [
    ['two modes', { REDIS_URL: 'redis://r:6379', REDIS_CLUSTER_NODES: 'a:7000' }, /^REDIS_URL, REDIS_CLUSTER_NODES: set only one of them/],
    ['three modes', { REDIS_URL: 'redis://r:6379', REDIS_CLUSTER_NODES: 'a:7000', REDIS_SENTINELS: 's:26379', REDIS_SENTINEL_NAME: 'p' }, /^REDIS_URL, REDIS_CLUSTER_NODES, REDIS_SENTINELS: set only one/],
    ['sentinels without a name', { REDIS_SENTINELS: 's:26379' }, /^REDIS_SENTINEL_NAME: required with REDIS_SENTINELS/],
    ['a sentinel name alone', { REDIS_SENTINEL_NAME: 'persona' }, /^REDIS_SENTINEL_NAME: only applies with REDIS_SENTINELS/],
    ['sentinel credentials on a cluster', { REDIS_CLUSTER_NODES: 'a:7000', REDIS_SENTINEL_PASSWORD: 'x' }, /^REDIS_SENTINEL_PASSWORD: only applies with REDIS_SENTINELS/],
    ['a password beside a URL', { REDIS_URL: 'redis://r:6379', REDIS_PASSWORD: 'pw' }, /^REDIS_PASSWORD: with REDIS_URL the credentials go in the URL/],
    ['REDIS_TLS beside a URL', { REDIS_URL: 'redis://r:6379', REDIS_TLS: 'true' }, /^REDIS_TLS: with REDIS_URL, TLS is asked for by the scheme/],
    ['a CA without TLS', { REDIS_CLUSTER_NODES: 'a:7000', REDIS_TLS_CA_FILE: '/ca.pem' }, /^REDIS_TLS_CA_FILE: only applies with TLS/],
    ['a node without a port', { REDIS_CLUSTER_NODES: 'a.internal' }, /^REDIS_CLUSTER_NODES: /],
    ['a port out of range', { REDIS_CLUSTER_NODES: 'a:0,b:70000' }, /^REDIS_CLUSTER_NODES: a:0 has no port between 1 and 65535/],
    ['no partitions', { INTAKE_PARTITIONS: '0' }, /^INTAKE_PARTITIONS: /],
    ['a wait longer than Persona waits', { REDIS_WAIT_TIMEOUT_MS: '5000' }, /^REDIS_WAIT_TIMEOUT_MS: /]
  ]
  for (const [name, env, expected] of cases) t.match(problemsOf(env).join('\n'), expected, name)
})

t.test('a password that fails a check is never echoed', async (t) => {
  const problems = problemsOf({ REDIS_URL: 'redis://r:6379', REDIS_PASSWORD: 'hunter2', REDIS_SENTINEL_PASSWORD: 'sesame' }).join('\n')
  t.notMatch(problems, /hunter2|sesame/)
  t.match(problems, /REDIS_PASSWORD/)
})
