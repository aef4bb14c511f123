import t from 'tap'
import { ConfigError, loadConfig, splitList, type Config } from '../../src/config/index.js'

const SECRET = 'wbhsec_11111111-2222-3333-4444-555555555555'
const OLD_SECRET = 'wbhsec_99999999-8888-7777-6666-555555555555'
const WHSEC_A = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'
const WHSEC_B = 'whsec_dGhpcyBpcyBhIHNlY29uZCBzZWNyZXQ='
const DEFAULT_SCHEDULE = [5, 30, 120, 600, 1800, 3600, 10800, 21600, 43200, 86400]

function load(env: Record<string, string | undefined>): Config {
  return loadConfig({ PERSONA_WEBHOOK_SECRET: SECRET, ...env })
}

function problemsOf(env: Record<string, string | undefined>): ConfigError {
  try {
    loadConfig(env)
  } catch (error) {
    if (error instanceof ConfigError) return error
    throw error
  }
  throw new Error('loadConfig accepted an invalid environment')
}

t.test('only the webhook secret is required; everything else has a default', async (t) => {
  t.same(loadConfig({ PERSONA_WEBHOOK_SECRET: SECRET }), {
    port: 3000,
    host: '0.0.0.0',
    logLevel: 'info',
    redis: {
      topology: { mode: 'single', url: 'redis://127.0.0.1:6379' },
      username: undefined,
      password: undefined,
      tls: undefined,
      layout: { prefix: 'persona-relay', partitions: 1, tagged: false },
      waitReplicas: 0,
      waitTimeoutMs: 1000
    },
    persona: { secrets: [SECRET], path: '/webhooks/persona', toleranceSeconds: 300, acceptSplitHeaders: false },
    dedupeTtlSeconds: 604800,
    bodyLimitBytes: 1048576,
    requestTimeoutMs: 15000,
    maxConnections: 2048,
    delivery: { historyHours: 24, deadLetterRetentionDays: 14, retentionSweepIntervalMs: 300000, probeIntervalMs: 30000 },
    adminToken: undefined,
    role: 'all',
    allowedIps: [],
    trustProxy: false,
    metricsPort: undefined,
    subscribers: [],
    shutdownTimeoutMs: 20000,
    personaApi: undefined,
    backfillIntervalMs: undefined
  })
})

t.test('every global variable is converted to its typed setting', async (t) => {
  const cases: [string, string, (config: Config) => unknown, unknown][] = [
    ['PORT', '8080', (c) => c.port, 8080],
    ['PORT', ' 8081 ', (c) => c.port, 8081],
    ['PORT', '1', (c) => c.port, 1],
    ['PORT', '65535', (c) => c.port, 65535],
    ['HOST', '127.0.0.1', (c) => c.host, '127.0.0.1'],
    ['LOG_LEVEL', 'debug', (c) => c.logLevel, 'debug'],
    ['LOG_LEVEL', 'silent', (c) => c.logLevel, 'silent'],
    ['REDIS_URL', 'rediss://user:pw@redis.internal:6380/2', (c) => c.redis.topology, { mode: 'single', url: 'rediss://user:pw@redis.internal:6380/2' }],
    ['REDIS_PREFIX', 'relay-test_1.a', (c) => c.redis.layout.prefix, 'relay-test_1.a'],
    ['PERSONA_WEBHOOK_PATH', '/hooks/persona/v2', (c) => c.persona.path, '/hooks/persona/v2'],
    ['PERSONA_TIMESTAMP_TOLERANCE_SECONDS', '60', (c) => c.persona.toleranceSeconds, 60],
    ['PERSONA_ACCEPT_SPLIT_HEADERS', 'true', (c) => c.persona.acceptSplitHeaders, true],
    ['PERSONA_ACCEPT_SPLIT_HEADERS', 'false', (c) => c.persona.acceptSplitHeaders, false],
    ['PERSONA_ACCEPT_SPLIT_HEADERS', 'TRUE', (c) => c.persona.acceptSplitHeaders, true],
    ['PERSONA_ACCEPT_SPLIT_HEADERS', 'False', (c) => c.persona.acceptSplitHeaders, false],
    ['PERSONA_ACCEPT_SPLIT_HEADERS', '1', (c) => c.persona.acceptSplitHeaders, true],
    ['PERSONA_ACCEPT_SPLIT_HEADERS', '0', (c) => c.persona.acceptSplitHeaders, false],
    ['DEDUPE_TTL_SECONDS', '86400', (c) => c.dedupeTtlSeconds, 86400],
    ['BODY_LIMIT_BYTES', '2048', (c) => c.bodyLimitBytes, 2048],
    ['REQUEST_TIMEOUT_MS', '5000', (c) => c.requestTimeoutMs, 5000],
    ['MAX_CONNECTIONS', '64', (c) => c.maxConnections, 64],
    ['DELIVERY_HISTORY_HOURS', '0.5', (c) => c.delivery.historyHours, 0.5],
    ['DELIVERY_HISTORY_HOURS', '48', (c) => c.delivery.historyHours, 48],
    ['DEAD_LETTER_RETENTION_DAYS', '30', (c) => c.delivery.deadLetterRetentionDays, 30],
    ['RETENTION_SWEEP_INTERVAL_SECONDS', '0.25', (c) => c.delivery.retentionSweepIntervalMs, 250],
    ['BREAKER_PROBE_INTERVAL_SECONDS', '2', (c) => c.delivery.probeIntervalMs, 2000],
    ['ADMIN_TOKEN', 'a-long-enough-admin-token', (c) => c.adminToken, 'a-long-enough-admin-token'],
    ['ROLE', 'worker', (c) => c.role, 'worker'],
    ['PERSONA_ALLOWED_IPS', 'persona, 10.0.0.0/8 ,2001:db8::/32,192.0.2.7', (c) => c.allowedIps, ['persona', '10.0.0.0/8', '2001:db8::/32', '192.0.2.7']],
    ['TRUST_PROXY', 'true', (c) => c.trustProxy, true],
    ['TRUST_PROXY', 'FALSE', (c) => c.trustProxy, false],
    ['TRUST_PROXY', '10.0.0.0/8,127.0.0.1', (c) => c.trustProxy, '10.0.0.0/8,127.0.0.1'],
    ['TRUST_PROXY', 'loopback,uniquelocal,2001:db8::/32', (c) => c.trustProxy, 'loopback,uniquelocal,2001:db8::/32'],
    ['METRICS_PORT', '9464', (c) => c.metricsPort, 9464],
    ['SHUTDOWN_TIMEOUT_MS', '5000', (c) => c.shutdownTimeoutMs, 5000]
  ]
  for (const [key, value, read, expected] of cases) {
    t.same(read(load({ [key]: value })), expected, `${key}=${JSON.stringify(value)}`)
  }
})

t.test('PERSONA_API_KEY enables backfill, with the API settings around it', async (t) => {
  t.same(load({ PERSONA_API_KEY: 'persona_production_abc' }).personaApi, {
    key: 'persona_production_abc',
    baseUrl: 'https://api.withpersona.com',
    version: undefined,
    keyInflection: undefined
  })
  const config = load({
    PERSONA_API_KEY: 'persona_sandbox_abc',
    PERSONA_API_BASE_URL: 'http://127.0.0.1:8080/',
    PERSONA_API_VERSION: '2023-01-05',
    PERSONA_API_KEY_INFLECTION: 'snake',
    BACKFILL_INTERVAL_SECONDS: '300.5'
  })
  t.same(config.personaApi, { key: 'persona_sandbox_abc', baseUrl: 'http://127.0.0.1:8080', version: '2023-01-05', keyInflection: 'snake' })
  t.equal(config.backfillIntervalMs, 300500)
  t.equal(load({ PERSONA_API_VERSION: '2023-01-05' }).personaApi, undefined, 'nothing without the key')
})

t.test('a bad PERSONA_API_KEY or API URL is never echoed', async (t) => {
  const error = problemsOf({ PERSONA_WEBHOOK_SECRET: SECRET, PERSONA_API_KEY: 'persona live key', PERSONA_API_BASE_URL: 'ftp://user:pw@api' })
  t.equal(error.problems.length, 2)
  t.notMatch(error.message, 'persona live key')
  t.notMatch(error.message, 'user:pw')
})

t.test('the webhook secret is a comma list; spaces and empty items are dropped', async (t) => {
  const cases: [string, string[]][] = [
    [SECRET, [SECRET]],
    [`${SECRET},${OLD_SECRET}`, [SECRET, OLD_SECRET]],
    [` ${SECRET} ,  ${OLD_SECRET} `, [SECRET, OLD_SECRET]],
    [`${SECRET},,${OLD_SECRET},`, [SECRET, OLD_SECRET]]
  ]
  for (const [value, expected] of cases) {
    t.same(loadConfig({ PERSONA_WEBHOOK_SECRET: value }).persona.secrets, expected, JSON.stringify(value))
  }
})

t.test('splitList trims items and drops empty ones', async (t) => {
  const cases: [string, string[]][] = [
    ['', []],
    ['a', ['a']],
    [' a , b ', ['a', 'b']],
    ['a,,b,', ['a', 'b']],
    [' , ', []]
  ]
  for (const [value, expected] of cases) t.same(splitList(value), expected, JSON.stringify(value))
})

t.test('empty string values count as unset', async (t) => {
  const config = load({ PORT: '', LOG_LEVEL: '', REDIS_URL: '', PERSONA_ACCEPT_SPLIT_HEADERS: '', SUBSCRIBER_CRM_SECRET: '' })
  t.equal(config.port, 3000)
  t.equal(config.logLevel, 'info')
  t.same(config.redis.topology, { mode: 'single', url: 'redis://127.0.0.1:6379' })
  t.equal(config.persona.acceptSplitHeaders, false)
  t.same(config.subscribers, [], 'a subscriber key with an empty value does not create a subscriber')

  t.same(problemsOf({ PERSONA_WEBHOOK_SECRET: '' }).problems, ['PERSONA_WEBHOOK_SECRET: required'])
  t.same(
    problemsOf({ PERSONA_WEBHOOK_SECRET: SECRET, SUBSCRIBER_CRM_URL: '', SUBSCRIBER_CRM_EVENTS: '*' }).problems,
    ['SUBSCRIBER_CRM_URL: required']
  )
})

t.test('zero subscribers are allowed', async (t) => {
  t.same(load({}).subscribers, [])
})

t.test('a subscriber takes its name from the keys, underscores included, and the DELIVERY_* defaults', async (t) => {
  const config = load({
    SUBSCRIBER_CRM_EU_URL: 'https://crm.eu.internal/hooks/persona',
    SUBSCRIBER_CRM_EU_EVENTS: 'inquiry.approved, inquiry.declined ,report/*'
  })
  t.same(config.subscribers, [
    {
      name: 'CRM_EU',
      url: 'https://crm.eu.internal/hooks/persona',
      patterns: ['inquiry.approved', 'inquiry.declined', 'report/*'],
      secrets: [],
      timeoutMs: 10000,
      maxAttempts: DEFAULT_SCHEDULE.length + 1,
      concurrency: 10,
      retrySchedule: DEFAULT_SCHEDULE,
      pauseAfterFailures: 20,
      lockDurationMs: 30000,
      stalledIntervalMs: 30000
    }
  ])
})

t.test('every subscriber setting overrides the DELIVERY_* default', async (t) => {
  const config = load({
    DELIVERY_TIMEOUT_MS: '3000',
    DELIVERY_CONCURRENCY: '4',
    DELIVERY_RETRY_SCHEDULE: '1,2,3',
    DELIVERY_PAUSE_AFTER_FAILURES: '5',
    SUBSCRIBER_A_URL: 'http://a.internal:8080',
    SUBSCRIBER_A_EVENTS: '*',
    SUBSCRIBER_A_SECRET: ` ${WHSEC_A} , ${WHSEC_B} `,
    SUBSCRIBER_A_TIMEOUT_MS: '1500',
    SUBSCRIBER_A_MAX_ATTEMPTS: '7',
    SUBSCRIBER_A_CONCURRENCY: '2',
    SUBSCRIBER_A_RETRY_SCHEDULE: ' 0.5 , 10 ',
    SUBSCRIBER_A_PAUSE_AFTER_FAILURES: '3',
    SUBSCRIBER_B_URL: 'https://b.internal',
    SUBSCRIBER_B_EVENTS: 'inquiry.*'
  })
  t.same(config.subscribers, [
    {
      name: 'A',
      url: 'http://a.internal:8080',
      patterns: ['*'],
      secrets: [WHSEC_A, WHSEC_B],
      timeoutMs: 1500,
      maxAttempts: 7,
      concurrency: 2,
      retrySchedule: [0.5, 10],
      pauseAfterFailures: 3,
      lockDurationMs: 30000,
      stalledIntervalMs: 30000
    },
    {
      name: 'B',
      url: 'https://b.internal',
      patterns: ['inquiry.*'],
      secrets: [],
      timeoutMs: 3000,
      maxAttempts: 4,
      concurrency: 4,
      retrySchedule: [1, 2, 3],
      pauseAfterFailures: 5,
      lockDurationMs: 30000,
      stalledIntervalMs: 30000
    }
  ])
})

t.test('max attempts follow from the schedule length plus one unless set', async (t) => {
  const base = { SUBSCRIBER_S_URL: 'https://s.internal', SUBSCRIBER_S_EVENTS: '*' }
  const cases: [string, Record<string, string>, number][] = [
    ['default schedule', {}, 11],
    ['global schedule', { DELIVERY_RETRY_SCHEDULE: '1,2' }, 3],
    ['subscriber schedule', { DELIVERY_RETRY_SCHEDULE: '1,2', SUBSCRIBER_S_RETRY_SCHEDULE: '1,2,3,4,5' }, 6],
    ['global max attempts', { DELIVERY_MAX_ATTEMPTS: '2', SUBSCRIBER_S_RETRY_SCHEDULE: '1,2,3,4,5' }, 2],
    ['subscriber max attempts', { DELIVERY_MAX_ATTEMPTS: '2', SUBSCRIBER_S_MAX_ATTEMPTS: '9' }, 9]
  ]
  for (const [label, env, expected] of cases) {
    t.equal(load({ ...base, ...env }).subscribers[0]?.maxAttempts, expected, label)
  }
})

t.test('the delivery lock outlasts twice the timeout unless DELIVERY_LOCK_DURATION_MS sets it, and the stall check follows a short lock', async (t) => {
  const base = { SUBSCRIBER_S_URL: 'https://s.internal', SUBSCRIBER_S_EVENTS: '*' }
  const cases: [string, Record<string, string>, { lockDurationMs: number; stalledIntervalMs: number }][] = [
    ['default', {}, { lockDurationMs: 30000, stalledIntervalMs: 30000 }],
    ['a long timeout', { SUBSCRIBER_S_TIMEOUT_MS: '25000' }, { lockDurationMs: 50000, stalledIntervalMs: 30000 }],
    ['a long global timeout', { DELIVERY_TIMEOUT_MS: '60000' }, { lockDurationMs: 120000, stalledIntervalMs: 30000 }],
    ['a short lock', { DELIVERY_LOCK_DURATION_MS: '2500' }, { lockDurationMs: 2500, stalledIntervalMs: 2500 }],
    ['a set lock wins over the timeout', { DELIVERY_LOCK_DURATION_MS: '90000', SUBSCRIBER_S_TIMEOUT_MS: '60000' }, { lockDurationMs: 90000, stalledIntervalMs: 30000 }]
  ]
  for (const [label, env, expected] of cases) {
    const [subscriber] = load({ ...base, ...env }).subscribers
    t.same({ lockDurationMs: subscriber?.lockDurationMs, stalledIntervalMs: subscriber?.stalledIntervalMs }, expected, label)
  }
  t.match(problemsOf({ PERSONA_WEBHOOK_SECRET: SECRET, DELIVERY_LOCK_DURATION_MS: '999' }).problems, [/^DELIVERY_LOCK_DURATION_MS: must be >= 1000/])
})

t.test('subscribers are sorted by name whatever the order of the keys', async (t) => {
  const config = load({
    SUBSCRIBER_ZETA_URL: 'https://z.internal',
    SUBSCRIBER_ZETA_EVENTS: '*',
    SUBSCRIBER_ALPHA_EVENTS: '*',
    SUBSCRIBER_ALPHA_URL: 'https://a.internal',
    SUBSCRIBER_MID_2_URL: 'https://m.internal',
    SUBSCRIBER_MID_2_EVENTS: '*'
  })
  t.same(config.subscribers.map((subscriber) => subscriber.name), ['ALPHA', 'MID_2', 'ZETA'])
})

t.test('a subscriber name may itself end in a setting-like word', async (t) => {
  const config = load({ SUBSCRIBER_SYNC_URL_URL: 'https://s.internal', SUBSCRIBER_SYNC_URL_EVENTS: 'case.*' })
  t.same(config.subscribers.map(({ name, url, patterns }) => ({ name, url, patterns })), [
    { name: 'SYNC_URL', url: 'https://s.internal', patterns: ['case.*'] }
  ])
})

t.test('each bad value is reported against its key', async (t) => {
  const subscriber = { SUBSCRIBER_S_URL: 'https://s.internal', SUBSCRIBER_S_EVENTS: '*' }
  const cases: [Record<string, string>, RegExp][] = [
    [{ PORT: 'abc' }, /^PORT: must be integer \(got "abc"\)$/],
    [{ PORT: '0' }, /^PORT: must be >= 1 \(got "0"\)$/],
    [{ PORT: '65536' }, /^PORT: must be <= 65535/],
    [{ PORT: '80.5' }, /^PORT: must be integer/],
    [{ PORT: '1e3' }, /^PORT: must be integer/],
    [{ PORT: '0x50' }, /^PORT: must be integer/],
    [{ PORT: 'true' }, /^PORT: must be integer/],
    [{ PORT: '99999999999999999999' }, /^PORT: must be integer/],
    [{ HOST: '   ' }, /^HOST: must match pattern/],
    [{ LOG_LEVEL: 'loud' }, /^LOG_LEVEL: must be equal to one of the allowed values \(got "loud"\)$/],
    [{ REDIS_URL: 'http://redis.internal' }, /^REDIS_URL: must match pattern/],
    [{ REDIS_PREFIX: 'has space' }, /^REDIS_PREFIX: must match pattern/],
    [{ PERSONA_WEBHOOK_SECRET: ' , ' }, /^PERSONA_WEBHOOK_SECRET: must match pattern/],
    [{ PERSONA_WEBHOOK_PATH: 'webhooks' }, /^PERSONA_WEBHOOK_PATH: must match pattern/],
    [{ PERSONA_TIMESTAMP_TOLERANCE_SECONDS: '0' }, /^PERSONA_TIMESTAMP_TOLERANCE_SECONDS: must be >= 1/],
    [{ PERSONA_ACCEPT_SPLIT_HEADERS: 'yes' }, /^PERSONA_ACCEPT_SPLIT_HEADERS: must be boolean \(got "yes"\)$/],
    [{ DEDUPE_TTL_SECONDS: '1.5' }, /^DEDUPE_TTL_SECONDS: must be integer/],
    [{ BODY_LIMIT_BYTES: '-1' }, /^BODY_LIMIT_BYTES: must be >= 1/],
    [{ DELIVERY_TIMEOUT_MS: 'soon' }, /^DELIVERY_TIMEOUT_MS: must be integer/],
    [{ DELIVERY_RETRY_SCHEDULE: '1,,2' }, /^DELIVERY_RETRY_SCHEDULE: must match pattern/],
    [{ DELIVERY_RETRY_SCHEDULE: '-1' }, /^DELIVERY_RETRY_SCHEDULE: must match pattern/],
    [{ DELIVERY_MAX_ATTEMPTS: '0' }, /^DELIVERY_MAX_ATTEMPTS: must be >= 1/],
    [{ DELIVERY_CONCURRENCY: 'many' }, /^DELIVERY_CONCURRENCY: must be integer/],
    [{ DELIVERY_HISTORY_HOURS: '0' }, /^DELIVERY_HISTORY_HOURS: must be > 0/],
    [{ DELIVERY_HISTORY_HOURS: '1,5' }, /^DELIVERY_HISTORY_HOURS: must be number/],
    [{ DEAD_LETTER_RETENTION_DAYS: 'never' }, /^DEAD_LETTER_RETENTION_DAYS: must be number/],
    [{ SHUTDOWN_TIMEOUT_MS: '0' }, /^SHUTDOWN_TIMEOUT_MS: must be >= 1/],
    [{ REQUEST_TIMEOUT_MS: '999' }, /^REQUEST_TIMEOUT_MS: must be >= 1000/],
    [{ MAX_CONNECTIONS: '0' }, /^MAX_CONNECTIONS: must be >= 1/],
    // A replay inside the signature window must still find its de-duplication record.
    [{ DEDUPE_TTL_SECONDS: '600' }, /^PERSONA_TIMESTAMP_TOLERANCE_SECONDS: must be less than half of DEDUPE_TTL_SECONDS \(600\).* \(got 300\)$/],
    [{ DEDUPE_TTL_SECONDS: '7200', PERSONA_TIMESTAMP_TOLERANCE_SECONDS: '3600' }, /^PERSONA_TIMESTAMP_TOLERANCE_SECONDS: must be less than half/],
    [{ PERSONA_API_KEY: 'two words' }, /^PERSONA_API_KEY: must match pattern [^(]*$/],
    [{ PERSONA_API_KEY: 'k', PERSONA_API_BASE_URL: 'api.withpersona.com' }, /^PERSONA_API_BASE_URL: must match pattern/],
    [{ PERSONA_API_KEY: 'k', PERSONA_API_BASE_URL: 'https://api.withpersona.com/api/v1' }, /^PERSONA_API_BASE_URL: must match pattern/],
    [{ PERSONA_API_KEY: 'k', PERSONA_API_VERSION: '2023 01 05' }, /^PERSONA_API_VERSION: must match pattern .* \(got "2023 01 05"\)$/],
    [{ PERSONA_API_KEY: 'k', PERSONA_API_KEY_INFLECTION: 'pascal' }, /^PERSONA_API_KEY_INFLECTION: must be equal to one of the allowed values$/],
    [{ PERSONA_API_KEY: 'k', BACKFILL_INTERVAL_SECONDS: '0' }, /^BACKFILL_INTERVAL_SECONDS: must be > 0 \(got "0"\)$/],
    [{ BACKFILL_INTERVAL_SECONDS: '60' }, /^BACKFILL_INTERVAL_SECONDS: needs PERSONA_API_KEY, as backfill reads Persona's Events API$/],
    // Fastify 5 ignores a hop count (fails closed): accepted, it would make every forwarded client the proxy.
    [{ TRUST_PROXY: '2' }, /^TRUST_PROXY: a hop count is not supported: Fastify ignores it; use true or the proxies' addresses\/CIDRs \(got "2"\)$/],
    [{ TRUST_PROXY: 'yes' }, /^TRUST_PROXY: expected true, false, or addresses\/CIDRs of proxies/],
    [{ TRUST_PROXY: '10.0.0.0/8,proxy.internal' }, /^TRUST_PROXY: expected true, false/],
    [{ TRUST_PROXY: '10.0.0.0/33' }, /^TRUST_PROXY: expected true, false/],
    [{ TRUST_PROXY: 'persona' }, /^TRUST_PROXY: expected true, false/],
    [{ ...subscriber, SUBSCRIBER_S_URL: 'ftp://s.internal' }, /^SUBSCRIBER_S_URL: must match pattern/],
    [{ ...subscriber, SUBSCRIBER_S_URL: 's.internal' }, /^SUBSCRIBER_S_URL: must match pattern/],
    [{ ...subscriber, SUBSCRIBER_S_EVENTS: 'inquiry approved' }, /^SUBSCRIBER_S_EVENTS: must match pattern/],
    [{ ...subscriber, SUBSCRIBER_S_EVENTS: 'a,,b' }, /^SUBSCRIBER_S_EVENTS: must match pattern/],
    [{ ...subscriber, SUBSCRIBER_S_SECRET: 'not-a-whsec' }, /^SUBSCRIBER_S_SECRET: must match pattern/],
    [{ ...subscriber, SUBSCRIBER_S_SECRET: `${WHSEC_A},whsec_` }, /^SUBSCRIBER_S_SECRET: must match pattern/],
    [{ ...subscriber, SUBSCRIBER_S_TIMEOUT_MS: '0' }, /^SUBSCRIBER_S_TIMEOUT_MS: must be >= 1 \(got "0"\)$/],
    [{ ...subscriber, SUBSCRIBER_S_MAX_ATTEMPTS: '2.5' }, /^SUBSCRIBER_S_MAX_ATTEMPTS: must be integer/],
    [{ ...subscriber, SUBSCRIBER_S_CONCURRENCY: 'x' }, /^SUBSCRIBER_S_CONCURRENCY: must be integer/],
    [{ ...subscriber, SUBSCRIBER_S_RETRY_SCHEDULE: '1;2' }, /^SUBSCRIBER_S_RETRY_SCHEDULE: must match pattern/],
    [{ SUBSCRIBER_S_EVENTS: '*' }, /^SUBSCRIBER_S_URL: required$/],
    [{ SUBSCRIBER_S_URL: 'https://s.internal' }, /^SUBSCRIBER_S_EVENTS: required$/],
    [{ ...subscriber, SUBSCRIBER_S_ORDERING: 'inquiry' }, /^SUBSCRIBER_S_ORDERING: /],
    [{ ...subscriber, SUBSCRIBER_S_ORDERING: 'object', SUBSCRIBER_S_ORDERING_WINDOW_MS: '-1' }, /^SUBSCRIBER_S_ORDERING_WINDOW_MS: must be >= 0/],
    [{ ...subscriber, SUBSCRIBER_S_ORDERING: 'object', SUBSCRIBER_S_STALE: 'drop' }, /^SUBSCRIBER_S_STALE: /],
    [{ ...subscriber, SUBSCRIBER_S_STALE: 'skip' }, /^SUBSCRIBER_S_STALE: only applies with SUBSCRIBER_S_ORDERING=object$/],
    [{ ...subscriber, SUBSCRIBER_S_ORDERING: 'none', SUBSCRIBER_S_ORDERING_WINDOW_MS: '100' }, /^SUBSCRIBER_S_ORDERING_WINDOW_MS: only applies with SUBSCRIBER_S_ORDERING=object$/],
    [{ ...subscriber, SUBSCRIBER_S_RATE_LIMIT: '50' }, /^SUBSCRIBER_S_RATE_LIMIT: must match pattern/],
    [{ ...subscriber, SUBSCRIBER_S_RATE_LIMIT: '50/h' }, /^SUBSCRIBER_S_RATE_LIMIT: must match pattern/],
    [{ ...subscriber, SUBSCRIBER_S_RATE_LIMIT: '0/s' }, /^SUBSCRIBER_S_RATE_LIMIT: must match pattern/],
    [{ ...subscriber, SUBSCRIBER_S_RATE_LIMIT: '1.5/s' }, /^SUBSCRIBER_S_RATE_LIMIT: must match pattern/],
    [{ ...subscriber, SUBSCRIBER_S_FILTER: 'approved' }, /^SUBSCRIBER_S_FILTER: not JSON \(/],
    [{ ...subscriber, SUBSCRIBER_S_FILTER: '{"payload.data.attributes.status":"approved"' }, /^SUBSCRIBER_S_FILTER: not JSON \(/],
    [{ ...subscriber, SUBSCRIBER_S_FILTER: '{' }, /^SUBSCRIBER_S_FILTER: not JSON \(/],
    [{ ...subscriber, SUBSCRIBER_S_FILTER: '[{"name":"inquiry.approved"}]' }, /^SUBSCRIBER_S_FILTER: must be a JSON object/],
    [{ ...subscriber, SUBSCRIBER_S_FILTER: '"approved"' }, /^SUBSCRIBER_S_FILTER: must be a JSON object/],
    [{ ...subscriber, SUBSCRIBER_S_FILTER: '{"status":{"$foo":1}}' }, /^SUBSCRIBER_S_FILTER: Unsupported operation: \$foo$/],
    [{ ...subscriber, SUBSCRIBER_S_FILTER: '{"$where":"true"}' }, /^SUBSCRIBER_S_FILTER: \$where is refused: filters may not run code$/],
    [{ ...subscriber, SUBSCRIBER_S_FILTER: '{"$or":[{"$expr":{}}]}' }, /^SUBSCRIBER_S_FILTER: \$expr is refused: filters may not run code$/],
    [{ ...subscriber, SUBSCRIBER_S_FOO: '1' }, /^SUBSCRIBER_S_FOO: not a subscriber setting/],
    [{ ...subscriber, SUBSCRIBER_s_URL: 'https://s.internal' }, /^SUBSCRIBER_s_URL: not a subscriber setting/],
    [{ SUBSCRIBER_URL: 'https://s.internal' }, /^SUBSCRIBER_URL: not a subscriber setting/]
  ]
  for (const [env, expected] of cases) {
    const error = problemsOf({ PERSONA_WEBHOOK_SECRET: SECRET, ...env })
    t.equal(error.problems.length, 1, `one problem for ${JSON.stringify(env)}`)
    t.match(error.problems[0], expected, JSON.stringify(env))
  }
})

t.test('a ConfigError lists every bad key at once and never a secret or REDIS_URL value', async (t) => {
  const redisUrl = 'http://admin:hunter2@redis.internal:6379'
  const badWhsec = 'whsec_not base64!'
  const badSubscriberUrl = 'ftp://deploy:s3cr3t-pass@files.internal'
  const error = problemsOf({
    PORT: '70000',
    REDIS_URL: redisUrl,
    LOG_LEVEL: 'loud',
    PERSONA_ACCEPT_SPLIT_HEADERS: 'maybe',
    DEDUPE_TTL_SECONDS: '1.5',
    BODY_LIMIT_BYTES: 'big',
    DELIVERY_HISTORY_HOURS: '0',
    DELIVERY_RETRY_SCHEDULE: 'soon',
    ROLE: 'boss',
    PERSONA_ALLOWED_IPS: 'persona, 10.0.0.0/33',
    ADMIN_TOKEN: 'too-short-token',
    SUBSCRIBER_NO_URL_EVENTS: 'inquiry.*',
    SUBSCRIBER_NO_EVENTS_URL: 'https://no-events.internal',
    SUBSCRIBER_FTP_URL: badSubscriberUrl,
    SUBSCRIBER_FTP_EVENTS: '*',
    SUBSCRIBER_X_FOO: 'bar',
    SUBSCRIBER_BAD_SECRET_URL: 'https://bad-secret.internal',
    SUBSCRIBER_BAD_SECRET_EVENTS: '*',
    SUBSCRIBER_BAD_SECRET_SECRET: badWhsec
  })
  t.equal(error.name, 'ConfigError')
  t.ok(error instanceof Error)
  const keys = [
    'PERSONA_WEBHOOK_SECRET',
    'PORT',
    'REDIS_URL',
    'LOG_LEVEL',
    'PERSONA_ACCEPT_SPLIT_HEADERS',
    'DEDUPE_TTL_SECONDS',
    'BODY_LIMIT_BYTES',
    'DELIVERY_HISTORY_HOURS',
    'DELIVERY_RETRY_SCHEDULE',
    'ROLE',
    'PERSONA_ALLOWED_IPS',
    'ADMIN_TOKEN',
    'SUBSCRIBER_NO_URL_URL',
    'SUBSCRIBER_NO_EVENTS_EVENTS',
    'SUBSCRIBER_FTP_URL',
    'SUBSCRIBER_X_FOO',
    'SUBSCRIBER_BAD_SECRET_SECRET'
  ]
  t.same(error.problems.map((problem) => problem.split(':')[0]).sort(), [...keys].sort(), 'each bad key exactly once')
  for (const key of keys) t.match(error.message, `  - ${key}: `, `the message names ${key}`)
  t.match(error.message, /^invalid configuration:\n/)
  t.match(error.message, 'PERSONA_WEBHOOK_SECRET: required')
  t.match(error.message, 'PORT: must be <= 65535 (got "70000")', 'harmless values are echoed to help')
  for (const hidden of [redisUrl, 'hunter2', badWhsec, badSubscriberUrl, 's3cr3t-pass', 'bar', 'too-short-token']) {
    t.notMatch(error.message, hidden, `the message does not contain ${hidden}`)
  }
})

t.test('a bad global key does not hide a bad subscriber key, and the other way round', async (t) => {
  const error = problemsOf({ SUBSCRIBER_S_EVENTS: '*' })
  t.same(error.problems, ['PERSONA_WEBHOOK_SECRET: required', 'SUBSCRIBER_S_URL: required'])
})

t.test('a webhook secret or subscriber secret that fails a check is never echoed', async (t) => {
  const cases: Record<string, string>[] = [
    { PERSONA_WEBHOOK_SECRET: ' ,, ' },
    { PERSONA_WEBHOOK_SECRET: SECRET, SUBSCRIBER_S_URL: 'https://s', SUBSCRIBER_S_EVENTS: '*', SUBSCRIBER_S_SECRET: 'wbhsec_leak' },
    { PERSONA_WEBHOOK_SECRET: SECRET, SUBSCRIBER_MONKEY_URL: 'https://token@x', SUBSCRIBER_MONKEY_EVENTS: 'a b' }
  ]
  for (const env of cases) {
    const error = problemsOf(env)
    t.equal(error.problems.length, 1, JSON.stringify(env))
    t.notMatch(error.message, '(got', `no value echoed for ${Object.keys(env).join(', ')}`)
  }
})

t.test('regression: more than eight bad keys are all reported (TypeBox stops Value.Errors at eight)', async (t) => {
  const env: Record<string, string> = {
    PORT: 'x',
    PERSONA_TIMESTAMP_TOLERANCE_SECONDS: 'x',
    DEDUPE_TTL_SECONDS: 'x',
    BODY_LIMIT_BYTES: 'x',
    DELIVERY_TIMEOUT_MS: 'x',
    DELIVERY_MAX_ATTEMPTS: 'x',
    DELIVERY_CONCURRENCY: 'x',
    DELIVERY_HISTORY_HOURS: 'x',
    DEAD_LETTER_RETENTION_DAYS: 'x',
    SHUTDOWN_TIMEOUT_MS: 'x',
    PERSONA_ACCEPT_SPLIT_HEADERS: 'x'
  }
  const error = problemsOf(env)
  t.same(error.problems.map((problem) => problem.split(':')[0]).sort(), ['PERSONA_WEBHOOK_SECRET', ...Object.keys(env)].sort())
})

t.test('regression: a bad LOG_LEVEL is reported once, not once per allowed level', async (t) => {
  t.same(problemsOf({ PERSONA_WEBHOOK_SECRET: SECRET, LOG_LEVEL: 'verbose' }).problems, [
    'LOG_LEVEL: must be equal to one of the allowed values (got "verbose")'
  ])
})

t.test('regression: a fractional integer setting is rejected rather than truncated', async (t) => {
  t.same(problemsOf({ PERSONA_WEBHOOK_SECRET: SECRET, DEDUPE_TTL_SECONDS: '1.5' }).problems, [
    'DEDUPE_TTL_SECONDS: must be integer (got "1.5")'
  ])
})

t.test('regression: a webhook secret list of only commas is rejected rather than read as no secret', async (t) => {
  t.same(problemsOf({ PERSONA_WEBHOOK_SECRET: ',' }).problems.map((problem) => problem.split(':')[0]), ['PERSONA_WEBHOOK_SECRET'])
})

t.test('SUBSCRIBER_<NAME>_FILTER is kept as written; without it a subscriber has no filter', async (t) => {
  const filter = '{"payload.data.attributes.status":"approved","payload.data.attributes.inquiry-template-id":{"$in":["itmpl_A","itmpl_B"]}}'
  const config = load({
    SUBSCRIBER_CRM_EU_URL: 'https://crm.internal',
    SUBSCRIBER_CRM_EU_EVENTS: 'inquiry.*',
    SUBSCRIBER_CRM_EU_FILTER: filter,
    SUBSCRIBER_AUDIT_URL: 'https://audit.internal',
    SUBSCRIBER_AUDIT_EVENTS: '*',
    SUBSCRIBER_EMPTY_URL: 'https://empty.internal',
    SUBSCRIBER_EMPTY_EVENTS: '*',
    SUBSCRIBER_EMPTY_FILTER: ''
  })
  t.strictSame(config.subscribers.map(({ name, filter }) => [name, filter]), [['AUDIT', undefined], ['CRM_EU', filter], ['EMPTY', undefined]])
  t.equal(load({ SUBSCRIBER_S_URL: 'https://s.internal', SUBSCRIBER_S_EVENTS: '*', SUBSCRIBER_S_FILTER: '{}' }).subscribers[0]?.filter, '{}', 'an empty query is a filter that lets everything through')
})

t.test('SUBSCRIBER_<NAME>_RATE_LIMIT is a count per second or per minute, kept as the time between attempts', async (t) => {
  const cases: [string, { text: string; intervalMs: number }][] = [
    ['50/s', { text: '50/s', intervalMs: 20 }],
    ['600/m', { text: '600/m', intervalMs: 100 }],
    [' 1 / m ', { text: '1 / m', intervalMs: 60_000 }],
    ['3/s', { text: '3/s', intervalMs: 1000 / 3 }]
  ]
  for (const [value, expected] of cases) {
    t.same(load({ SUBSCRIBER_S_URL: 'https://s.internal', SUBSCRIBER_S_EVENTS: '*', SUBSCRIBER_S_RATE_LIMIT: value }).subscribers[0]?.rateLimit, expected, value)
  }
  t.equal(load({ SUBSCRIBER_S_URL: 'https://s.internal', SUBSCRIBER_S_EVENTS: '*' }).subscribers[0]?.rateLimit, undefined, 'unset: no limit')
})

t.test('SUBSCRIBER_<NAME>_ORDERING=object orders by object, with a window of 0 and stale events delivered unless told otherwise', async (t) => {
  const base = { SUBSCRIBER_S_URL: 'https://s.internal', SUBSCRIBER_S_EVENTS: '*' }
  t.equal(load(base).subscribers[0]?.ordering, undefined, 'unset: not ordered')
  t.equal(load({ ...base, SUBSCRIBER_S_ORDERING: 'none' }).subscribers[0]?.ordering, undefined, 'none: not ordered')
  t.same(load({ ...base, SUBSCRIBER_S_ORDERING: 'object' }).subscribers[0]?.ordering, { windowMs: 0, stale: 'deliver' })
  t.same(load({ ...base, SUBSCRIBER_S_ORDERING: 'object', SUBSCRIBER_S_ORDERING_WINDOW_MS: '250', SUBSCRIBER_S_STALE: 'skip' }).subscribers[0]?.ordering, { windowMs: 250, stale: 'skip' })
})

t.test('tracing is on with an OTLP endpoint, unless OTEL_SDK_DISABLED, over http/protobuf unless told http/json', async (t) => {
  t.equal(load({}).tracing, undefined, 'no endpoint: off')
  t.same(load({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }).tracing, { protocol: 'http/protobuf', serviceName: 'persona-relay' })
  t.same(load({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://collector:4318/v1/traces', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_SERVICE_NAME: 'relay-eu' }).tracing,
    { protocol: 'http/json', serviceName: 'relay-eu' })
  t.equal(load({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_SDK_DISABLED: 'true' }).tracing, undefined, 'disabled: off')
  t.match(problemsOf({ PERSONA_WEBHOOK_SECRET: SECRET, OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4317', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }).problems, [/^OTEL_EXPORTER_OTLP_PROTOCOL: /], 'grpc is not offered')
  t.match(problemsOf({ PERSONA_WEBHOOK_SECRET: SECRET, OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' }).problems, [/^OTEL_EXPORTER_OTLP_ENDPOINT: /])
})

t.test('an invalid SUBSCRIBER_<NAME>_FILTER is a ConfigError whose message names the variable', async (t) => {
  const cases: [string, string, RegExp][] = [
    ['bad JSON', '{"payload.data.attributes.status":approved}', /not JSON \(/],
    ['an unknown operator', '{"payload.data.attributes.status":{"$equals":"approved"}}', /Unsupported operation: \$equals/],
    ['$where', '{"$where":"this.name === \'inquiry.approved\'"}', /\$where is refused: filters may not run code/],
    ['an array', '[{"payload.data.attributes.status":"approved"}]', /must be a JSON object/]
  ]
  for (const [label, filter, problem] of cases) {
    const error = problemsOf({
      PERSONA_WEBHOOK_SECRET: SECRET,
      SUBSCRIBER_AUDIT_URL: 'https://audit.internal',
      SUBSCRIBER_AUDIT_EVENTS: '*',
      SUBSCRIBER_CRM_EU_URL: 'https://crm.internal',
      SUBSCRIBER_CRM_EU_EVENTS: 'inquiry.*',
      SUBSCRIBER_CRM_EU_FILTER: filter
    })
    t.equal(error.name, 'ConfigError', label)
    t.equal(error.problems.length, 1, `${label}: one problem`)
    t.match(error.problems[0], /^SUBSCRIBER_CRM_EU_FILTER: /, `${label}: the problem names the variable`)
    t.match(error.problems[0], problem, label)
    t.match(error.message, /^invalid configuration:\n {2}- SUBSCRIBER_CRM_EU_FILTER: /, `${label}: the message names the variable`)
  }
})

t.test('a bad filter is reported beside the other bad keys', async (t) => {
  const error = problemsOf({
    PERSONA_WEBHOOK_SECRET: SECRET,
    PORT: 'x',
    SUBSCRIBER_A_URL: 'https://a.internal',
    SUBSCRIBER_A_EVENTS: '*',
    SUBSCRIBER_A_FILTER: '{"$where":"true"}',
    SUBSCRIBER_B_URL: 'https://b.internal',
    SUBSCRIBER_B_EVENTS: '*',
    SUBSCRIBER_B_FILTER: 'approved'
  })
  t.same(error.problems.map((problem) => problem.split(':')[0]).sort(), ['PORT', 'SUBSCRIBER_A_FILTER', 'SUBSCRIBER_B_FILTER'])
})

t.test('a key that is not a subscriber setting lists _FILTER, _RATE_LIMIT and the ordering settings among those that are', async (t) => {
  t.match(problemsOf({ PERSONA_WEBHOOK_SECRET: SECRET, SUBSCRIBER_S_FILTERS: '{}' }).problems, [/^SUBSCRIBER_S_FILTERS: not a subscriber setting \(expected .*_PAUSE_AFTER_FAILURES, _FILTER, _RATE_LIMIT, _ORDERING, _ORDERING_WINDOW_MS or _STALE with NAME/])
})

t.test('regression: a bad filter is reported even when another setting of the same subscriber is bad', async (t) => {
  // loadConfig reports every bad key at once; the filter is only compiled once the rest of its section parses.
  const error = problemsOf({ PERSONA_WEBHOOK_SECRET: SECRET, SUBSCRIBER_CRM_EVENTS: 'inquiry.*', SUBSCRIBER_CRM_FILTER: '{"$where":"true"}' })
  t.same(error.problems.map((problem) => problem.split(':')[0]).sort(), ['SUBSCRIBER_CRM_FILTER', 'SUBSCRIBER_CRM_URL'])
})
