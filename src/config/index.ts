import Value from 'typebox/value'
import type { Static, TObject, TSchema } from 'typebox'
import { allowlistEntryProblem, PERSONA_KEYWORD } from '../persona/source-allowlist.js'
import { compileFilter } from './filter.js'
import { redisConfigOf, type RedisConfig } from './redis.js'
import { EnvSchema, SubscriberEnvSchema, type Env, type SubscriberEnv } from './schema.js'

export interface SubscriberConfig {
  name: string
  url: string
  patterns: string[]
  secrets: string[]
  timeoutMs: number
  maxAttempts: number
  concurrency: number
  /** Seconds to wait before each retry; the last value repeats when maxAttempts outlasts it. */
  retrySchedule: number[]
  /** Consecutive failed attempts that open the circuit breaker and pause the subscriber. */
  pauseAfterFailures: number
  /** A worker's lock on a delivery in flight; a crashed worker's deliveries return after about this long. */
  lockDurationMs: number
  /** How often workers look for deliveries whose lock has expired. */
  stalledIntervalMs: number
  /** A MongoDB-style query over the event's attributes (config/filter.ts); events it refuses are not sent. */
  filter: string | undefined
  /** SUBSCRIBER_<NAME>_RATE_LIMIT as written (`50/s`) and as the time between attempts, for every instance together. */
  rateLimit: { text: string; intervalMs: number } | undefined
  /**
   * SUBSCRIBER_<NAME>_ORDERING=object: one delivery at a time per Persona object, in created-at
   * order, after waiting `windowMs` for earlier events; `stale` says what becomes of an event older
   * than one already delivered for its object.
   */
  ordering: { windowMs: number; stale: 'deliver' | 'skip' } | undefined
}

export interface Config {
  port: number
  host: string
  logLevel: Env['LOG_LEVEL']
  redis: RedisConfig
  persona: {
    secrets: string[]
    path: string
    toleranceSeconds: number
    acceptSplitHeaders: boolean
  }
  dedupeTtlSeconds: number
  bodyLimitBytes: number
  requestTimeoutMs: number
  maxConnections: number
  delivery: {
    historyHours: number
    deadLetterRetentionDays: number
    retentionSweepIntervalMs: number
    probeIntervalMs: number
  }
  /** Enables the admin API when set. */
  adminToken: string | undefined
  /** intake: only takes webhooks; worker: only fans out and delivers; all: both. */
  role: 'all' | 'intake' | 'worker'
  /** Sources allowed to post webhooks; empty allows every source. */
  allowedIps: string[]
  /** true, false, or the proxies' addresses/CIDRs, comma-separated (Fastify's trustProxy). */
  trustProxy: boolean | string
  /** Serve /metrics only on this port; unset, on the main port. */
  metricsPort: number | undefined
  subscribers: SubscriberConfig[]
  shutdownTimeoutMs: number
  /** Persona's Events API, for backfill; undefined without PERSONA_API_KEY. */
  personaApi: PersonaApiConfig | undefined
  /** How often the worker role backfills on its own; undefined: only when asked. */
  backfillIntervalMs: number | undefined
  /** OpenTelemetry tracing; undefined (off) without an OTLP endpoint, or with OTEL_SDK_DISABLED=true. */
  tracing: { protocol: 'http/protobuf' | 'http/json'; serviceName: string } | undefined
}

export interface PersonaApiConfig {
  key: string
  baseUrl: string
  /** Sent as Persona-Version; unset, the key's default version applies. */
  version: string | undefined
  /** Sent as Key-Inflection; unset, the organisation's default applies. */
  keyInflection: 'camel' | 'kebab' | 'snake' | undefined
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((problem) => `  - ${problem}`).join('\n')}`)
    this.name = 'ConfigError'
  }
}

const SUBSCRIBER_KEY = /^SUBSCRIBER_([A-Z0-9_]+?)_(URL|EVENTS|SECRET|TIMEOUT_MS|MAX_ATTEMPTS|CONCURRENCY|RETRY_SCHEDULE|PAUSE_AFTER_FAILURES|FILTER|RATE_LIMIT|ORDERING|ORDERING_WINDOW_MS|STALE)$/

/** Reads the whole configuration from the environment; every bad key is reported in one error. */
export function loadConfig(env: Record<string, string | undefined>): Config {
  const problems: string[] = []
  const global = parseSection(EnvSchema, pick(env, Object.keys(EnvSchema.properties)), '', problems)
  const groups = groupSubscriberKeys(env, problems)
  const subscribers: SubscriberConfig[] = []
  for (const [name, values] of groups) {
    const parsed = parseSection(SubscriberEnvSchema, values, `SUBSCRIBER_${name}_`, problems)
    // Checked whatever else of the subscriber is wrong: every bad key is reported at once.
    const filterProblem = values.FILTER === undefined ? undefined : compileFilter(values.FILTER)
    if (typeof filterProblem === 'string') problems.push(`SUBSCRIBER_${name}_FILTER: ${filterProblem}`)
    for (const setting of ['ORDERING_WINDOW_MS', 'STALE']) {
      if (values[setting] !== undefined && values.ORDERING !== 'object') {
        problems.push(`SUBSCRIBER_${name}_${setting}: only applies with SUBSCRIBER_${name}_ORDERING=object`)
      }
    }
    if (parsed && global) subscribers.push(toSubscriber(name, parsed, global))
  }
  for (const entry of splitList(env.PERSONA_ALLOWED_IPS ?? '')) {
    const problem = allowlistEntryProblem(entry)
    if (problem) problems.push(`PERSONA_ALLOWED_IPS: ${problem}`)
  }
  const trustProxyProblem = global ? trustProxyProblemOf(global.TRUST_PROXY) : undefined
  if (trustProxyProblem) problems.push(`TRUST_PROXY: ${trustProxyProblem}`)
  if (global?.BACKFILL_INTERVAL_SECONDS !== undefined && !global.PERSONA_API_KEY) {
    problems.push('BACKFILL_INTERVAL_SECONDS: needs PERSONA_API_KEY, as backfill reads Persona\'s Events API')
  }
  // A signed request can be replayed until its t plus the tolerance, and its record may date from
  // as early as t minus the tolerance (t may lie in the future by that much): the record must
  // outlive both, or a replay inside the window would be taken as a new event.
  if (global && global.PERSONA_TIMESTAMP_TOLERANCE_SECONDS * 2 >= global.DEDUPE_TTL_SECONDS) {
    problems.push(
      `PERSONA_TIMESTAMP_TOLERANCE_SECONDS: must be less than half of DEDUPE_TTL_SECONDS (${global.DEDUPE_TTL_SECONDS}), or a replay inside the window could outlive its de-duplication record (got ${global.PERSONA_TIMESTAMP_TOLERANCE_SECONDS})`
    )
  }
  const redis = global ? redisConfigOf(global, problems) : undefined
  if (!global || !redis || problems.length > 0) throw new ConfigError(problems)

  return {
    port: global.PORT,
    host: global.HOST,
    logLevel: global.LOG_LEVEL,
    redis,
    persona: {
      secrets: splitList(global.PERSONA_WEBHOOK_SECRET),
      path: global.PERSONA_WEBHOOK_PATH,
      toleranceSeconds: global.PERSONA_TIMESTAMP_TOLERANCE_SECONDS,
      acceptSplitHeaders: global.PERSONA_ACCEPT_SPLIT_HEADERS
    },
    dedupeTtlSeconds: global.DEDUPE_TTL_SECONDS,
    bodyLimitBytes: global.BODY_LIMIT_BYTES,
    requestTimeoutMs: global.REQUEST_TIMEOUT_MS,
    maxConnections: global.MAX_CONNECTIONS,
    delivery: {
      historyHours: global.DELIVERY_HISTORY_HOURS,
      deadLetterRetentionDays: global.DEAD_LETTER_RETENTION_DAYS,
      retentionSweepIntervalMs: Math.round(global.RETENTION_SWEEP_INTERVAL_SECONDS * 1000),
      probeIntervalMs: Math.round(global.BREAKER_PROBE_INTERVAL_SECONDS * 1000)
    },
    adminToken: global.ADMIN_TOKEN,
    role: global.ROLE,
    allowedIps: splitList(global.PERSONA_ALLOWED_IPS ?? ''),
    trustProxy: parseTrustProxy(global.TRUST_PROXY),
    metricsPort: global.METRICS_PORT,
    subscribers: subscribers.sort((a, b) => a.name.localeCompare(b.name)),
    shutdownTimeoutMs: global.SHUTDOWN_TIMEOUT_MS,
    personaApi: global.PERSONA_API_KEY
      ? {
          key: global.PERSONA_API_KEY,
          baseUrl: global.PERSONA_API_BASE_URL.replace(/\/$/, ''),
          version: global.PERSONA_API_VERSION,
          keyInflection: global.PERSONA_API_KEY_INFLECTION
        }
      : undefined,
    backfillIntervalMs: global.BACKFILL_INTERVAL_SECONDS === undefined ? undefined : Math.round(global.BACKFILL_INTERVAL_SECONDS * 1000),
    tracing: (global.OTEL_EXPORTER_OTLP_ENDPOINT || global.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) && !global.OTEL_SDK_DISABLED
      ? { protocol: global.OTEL_EXPORTER_OTLP_PROTOCOL, serviceName: global.OTEL_SERVICE_NAME }
      : undefined
  }
}

function toSubscriber(name: string, values: SubscriberEnv, global: Env): SubscriberConfig {
  const retrySchedule = splitList(values.RETRY_SCHEDULE ?? global.DELIVERY_RETRY_SCHEDULE).map(Number)
  const timeoutMs = values.TIMEOUT_MS ?? global.DELIVERY_TIMEOUT_MS
  return {
    name,
    url: values.URL,
    patterns: splitList(values.EVENTS),
    secrets: splitList(values.SECRET ?? ''),
    timeoutMs,
    maxAttempts: values.MAX_ATTEMPTS ?? global.DELIVERY_MAX_ATTEMPTS ?? retrySchedule.length + 1,
    concurrency: values.CONCURRENCY ?? global.DELIVERY_CONCURRENCY,
    retrySchedule,
    pauseAfterFailures: values.PAUSE_AFTER_FAILURES ?? global.DELIVERY_PAUSE_AFTER_FAILURES,
    filter: values.FILTER,
    rateLimit: values.RATE_LIMIT === undefined ? undefined : rateLimitOf(values.RATE_LIMIT),
    ordering: values.ORDERING === 'object' ? { windowMs: values.ORDERING_WINDOW_MS ?? 0, stale: values.STALE ?? 'deliver' } : undefined,
    ...lockTimes(global.DELIVERY_LOCK_DURATION_MS, timeoutMs)
  }
}

/** `50/s`, `600/m`: attempts start no closer together than the period divided by the count. */
function rateLimitOf(text: string) {
  const [count, unit] = text.replace(/\s/g, '').split('/') as [string, string]
  return { text: text.trim(), intervalMs: (unit === 's' ? 1000 : 60_000) / Number(count) }
}

/** BullMQ's own default; a shorter lock gets a stall check as often, so that it also means a quick recovery. */
const DEFAULT_STALLED_INTERVAL_MS = 30_000

/**
 * Unset, the lock outlasts the slowest attempt twice over, as before the setting existed; a lock
 * set shorter is renewed while the attempt runs, so only a dead worker loses it.
 */
function lockTimes(lockDurationMs: number | undefined, timeoutMs: number) {
  const lock = lockDurationMs ?? Math.max(30_000, timeoutMs * 2)
  return { lockDurationMs: lock, stalledIntervalMs: Math.min(DEFAULT_STALLED_INTERVAL_MS, lock) }
}

function groupSubscriberKeys(env: Record<string, string | undefined>, problems: string[]) {
  const groups = new Map<string, Record<string, string>>()
  for (const [key, value] of Object.entries(env)) {
    if (!key.startsWith('SUBSCRIBER_') || value === undefined || value === '') continue
    const match = SUBSCRIBER_KEY.exec(key)
    if (!match) {
      problems.push(`${key}: not a subscriber setting (expected SUBSCRIBER_<NAME>_URL, _EVENTS, _SECRET, _TIMEOUT_MS, _MAX_ATTEMPTS, _CONCURRENCY, _RETRY_SCHEDULE, _PAUSE_AFTER_FAILURES, _FILTER, _RATE_LIMIT, _ORDERING, _ORDERING_WINDOW_MS or _STALE with NAME in [A-Z0-9_])`)
      continue
    }
    const [, name, setting] = match as unknown as [string, string, string]
    const group = groups.get(name) ?? {}
    group[setting] = value
    groups.set(name, group)
  }
  return groups
}

/**
 * Checks key by key rather than with one Value.Errors call: that stops after a few errors and
 * reports a union once per member, and every bad key should be named once, all at the same time.
 */
function parseSection<T extends TObject>(
  schema: T,
  raw: Record<string, string>,
  keyPrefix: string,
  problems: string[]
): Static<T> | undefined {
  const problemsBefore = problems.length
  const parsed: Record<string, unknown> = {}
  for (const [key, property] of Object.entries(schema.properties) as [string, TSchema & SchemaFacts][]) {
    const text = raw[key]
    if (text === undefined) {
      if (property.default !== undefined) parsed[key] = property.default
      else if ((schema.required as string[]).includes(key)) problems.push(`${keyPrefix}${key}: required`)
      continue
    }
    const value = convert(property, text)
    const [error] = Value.Errors(property, value)
    if (error) problems.push(`${keyPrefix}${key}: ${describe(`${keyPrefix}${key}`, error.message, text)}`)
    else parsed[key] = value
  }
  return problems.length === problemsBefore ? (parsed as Static<T>) : undefined
}

interface SchemaFacts {
  type?: string
  default?: unknown
}

const INTEGER = /^-?\d+$/
const DECIMAL = /^-?\d+(\.\d+)?$/
const BOOLEANS: Record<string, boolean> = { true: true, false: false, 1: true, 0: false }

/**
 * Strict on purpose: Value.Convert truncates `1.5` to 1 for an integer and reads `true` as 1, so a
 * typo would silently become a different setting. Anything not converted fails the check.
 */
function convert(schema: SchemaFacts, text: string): unknown {
  const trimmed = text.trim()
  if (schema.type === 'integer' && INTEGER.test(trimmed) && Number.isSafeInteger(Number(trimmed))) return Number(trimmed)
  if (schema.type === 'number' && DECIMAL.test(trimmed)) return Number(trimmed)
  if (schema.type === 'boolean') return BOOLEANS[trimmed.toLowerCase()] ?? text
  return text
}

// URLs too: REDIS_URL and subscriber URLs may carry credentials (user:password@host, ?token=).
const SENSITIVE_KEY = /SECRET|TOKEN|KEY|PASSWORD|URL$/

function describe(key: string, message: string, raw: string): string {
  // The message ends up in logs: values that may hold credentials are never echoed.
  if (SENSITIVE_KEY.test(key)) return message
  return `${message} (got ${JSON.stringify(raw)})`
}

function pick(env: Record<string, string | undefined>, keys: string[]): Record<string, string> {
  const picked: Record<string, string> = {}
  for (const key of keys) {
    const value = env[key]
    if (value !== undefined && value !== '') picked[key] = value
  }
  return picked
}

const PROXY_RANGE_NAMES = new Set(['loopback', 'linklocal', 'uniquelocal'])

function parseTrustProxy(value: string): boolean | string {
  if (/^(true|false)$/i.test(value)) return value.toLowerCase() === 'true'
  return value
}

/**
 * Fastify would throw on a bad address only when the app is built, and it ignores a hop count
 * (it cannot tell a proxy from a client): both are reported here, with the rest of the config.
 */
function trustProxyProblemOf(value: string): string | undefined {
  if (/^(true|false)$/i.test(value)) return undefined
  if (/^\d+$/.test(value)) {
    return `a hop count is not supported: Fastify ignores it; use true or the proxies' addresses/CIDRs (got ${JSON.stringify(value)})`
  }
  const bad = splitList(value).filter((entry) => !PROXY_RANGE_NAMES.has(entry) && (entry === PERSONA_KEYWORD || allowlistEntryProblem(entry)))
  if (bad.length === 0) return undefined
  return `expected true, false, or addresses/CIDRs of proxies (or loopback, linklocal, uniquelocal), comma-separated (got ${JSON.stringify(value)})`
}

/** The stand-in `.env.example` ships, which no delivery from Persona could ever verify under. */
export const PLACEHOLDER_SECRET_PREFIX = 'wbhsec_replace-me'

export function hasPlaceholderSecret(secrets: readonly string[]): boolean {
  return secrets.some((secret) => secret.startsWith(PLACEHOLDER_SECRET_PREFIX))
}

export function splitList(value: string): string[] {
  return value.split(',').map((item) => item.trim()).filter((item) => item.length > 0)
}
