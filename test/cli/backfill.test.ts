import t, { type Test } from 'tap'
import { Redis } from 'ioredis'
import { main } from '../../src/cli/main.js'
import type { Output } from '../../src/cli/args.js'
import { startRelay, testEnv, uniqueEventId } from '../helpers/app.js'
import { backfillEnv } from '../helpers/backfill.js'
import { API_KEY, apiEvent, startPersonaApi, type FakePersonaApi } from '../helpers/persona-api.js'
import { freePort, startRedis, type TestRedis } from '../helpers/redis.js'
import { startSubscriber } from '../helpers/subscriber.js'

const minutesAgo = (minutes: number) => new Date(Date.now() - minutes * 60_000)

async function run(argv: string[], env: NodeJS.ProcessEnv) {
  const out: string[] = []
  const err: string[] = []
  const output: Output = { out: (line) => out.push(line), err: (line) => err.push(line) }
  const code = await main(['backfill', ...argv], env, output)
  return { code, out, err }
}

function cliEnv(redis: TestRedis, api: FakePersonaApi, overrides: Record<string, string> = {}) {
  return testEnv(redis, { ...backfillEnv(api.baseUrl, API_KEY), LOG_LEVEL: 'silent', ...overrides })
}

async function setup(t: Test, items: unknown[] = []) {
  const redis = await startRedis()
  const api = await startPersonaApi({ items })
  const client = new Redis(redis.url)
  t.teardown(async () => {
    client.disconnect()
    await api.close()
    await redis.stop()
  })
  return { redis, api, client }
}

t.test('backfill --since queues what was missed; the running relay delivers it as source backfill', async (t) => {
  const missed = [uniqueEventId(), uniqueEventId()]
  const { redis, api } = await setup(t, missed.map((id, index) => apiEvent(id, minutesAgo(10 + index))))
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const env = { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' }
  await startRelay(t, env, redis)

  const { code, out, err } = await run(['--since', '1h'], cliEnv(redis, api, env))
  t.equal(code, 0, err.join('\n'))
  t.match(out[0], /^backfill bf_[0-9a-f-]{36}: \S+ to \S+$/)
  t.match(out[1], /^page 1: seen 2, queued 2, already recorded 0, invalid 0$/)
  t.match(JSON.parse(out.at(-1)!), { status: 'succeeded', trigger: 'cli', queued: 2, skipped: 0 })
  const received = await subscriber.waitFor(2)
  t.same(received.map((request) => request.headers['webhook-id']).sort(), [...missed].sort())
  t.ok(received.every((request) => request.headers['persona-relay-source'] === 'backfill'))

  const again = await run(['--since', '1h'], cliEnv(redis, api, env))
  t.equal(again.code, 0)
  t.match(JSON.parse(again.out.at(-1)!), { queued: 0, skipped: 2 }, 'a second run skips them')
})

t.test('backfill --dry-run prints what it would queue and records nothing', async (t) => {
  const id = uniqueEventId()
  const { redis, api, client } = await setup(t, [apiEvent(id, minutesAgo(3))])
  const { code, out } = await run(['--since', minutesAgo(60).toISOString(), '--dry-run'], cliEnv(redis, api))
  t.equal(code, 0)
  t.match(out[0], /\(dry run\)$/)
  t.match(out[1], /^page 1: seen 1, would queue 1, already recorded 0, invalid 0$/)
  t.match(JSON.parse(out.at(-1)!), { dryRun: true, wouldQueue: 1, queued: 0 })
  t.equal(await client.exists(`persona-relay:event:${id}`), 0)
  t.equal(await client.exists('persona-relay:intake'), 0)
})

t.test('an invalid API key: exit 1 with the reason and what to check, never the key', async (t) => {
  const { redis, api } = await setup(t, [apiEvent(uniqueEventId(), minutesAgo(3))])
  const { code, out, err } = await run(['--since', '2h'], cliEnv(redis, api, { PERSONA_API_KEY: 'persona_bad_key_abcdef' }))
  t.equal(code, 1)
  t.match(err.join('\n'), /backfill failed: PERSONA_API_UNAUTHORIZED: Persona refused PERSONA_API_KEY \(HTTP 401\): check that the key exists/)
  t.match(JSON.parse(out.at(-1)!), { status: 'failed', error: { code: 'PERSONA_API_UNAUTHORIZED' } })
  t.notOk([...out, ...err].join('\n').includes('persona_bad_key_abcdef'))
})

t.test('usage mistakes exit 2 with the reason and the usage', async (t) => {
  const { redis, api } = await setup(t)
  const cases: [string[], RegExp][] = [
    [[], /since is required/],
    [['--since', 'a while ago'], /since must be an ISO 8601 time with its zone/],
    [['--since', '1h', '--until', '2h'], /since must be earlier than until/],
    [['--since', '8d'], /since must be within the last 7d/],
    [['--since'], /argument missing/],
    [['--since', '1h', '--force'], /Unknown option '--force'/]
  ]
  for (const [argv, reason] of cases) {
    const { code, err } = await run(argv, cliEnv(redis, api))
    t.equal(code, 2, argv.join(' '))
    t.match(err.join('\n'), reason)
    t.match(err.join('\n'), /persona-relay backfill --since/, 'with the usage')
  }
  t.equal(api.requests.length, 0)
})

t.test('a relay that is not set up for backfill, or not at all, exits 1 saying why', async (t) => {
  const { redis, api } = await setup(t)
  const withoutKey = await run(['--since', '1h'], cliEnv(redis, api, { PERSONA_API_KEY: '' }))
  t.equal(withoutKey.code, 1)
  t.match(withoutKey.err.join('\n'), /backfill needs PERSONA_API_KEY/)
  const badConfig = await run(['--since', '1h'], { ...cliEnv(redis, api), PERSONA_API_BASE_URL: 'ftp://persona', PERSONA_API_KEY_INFLECTION: 'shouty' })
  t.equal(badConfig.code, 1)
  t.match(badConfig.err.join('\n'), /invalid configuration:[\s\S]*PERSONA_API_BASE_URL[\s\S]*PERSONA_API_KEY_INFLECTION/)
})

t.test('a backfill already running elsewhere, or no Redis: exit 1 saying so', async (t) => {
  const { redis, api, client } = await setup(t)
  await client.set('persona-relay:backfill:lock', 'another-instance', 'PX', 60_000)
  const busy = await run(['--since', '1h'], cliEnv(redis, api))
  t.equal(busy.code, 1)
  t.match(busy.err.join('\n'), /a backfill is already running/)
  t.equal(api.requests.length, 0)

  const noRedis = await run(['--since', '1h'], { ...cliEnv(redis, api), REDIS_URL: `redis://127.0.0.1:${await freePort()}` })
  t.equal(noRedis.code, 1)
  t.match(noRedis.err.join('\n'), /backfill failed: cannot reach Redis \(REDIS_URL\): connect ECONNREFUSED/)
})

t.test('the command list names backfill', async (t) => {
  const out: string[] = []
  await main(['help'], {}, { out: (line) => out.push(line), err: () => undefined })
  t.match(out.join('\n'), /backfill +fetch events the relay missed/)
})
