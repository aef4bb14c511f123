import Value from 'typebox/value'
import type { Static, TObject, TSchema } from 'typebox'
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
}

export interface Config {
  port: number
  host: string
  logLevel: Env['LOG_LEVEL']
  redis: { url: string; prefix: string }
  persona: {
    secrets: string[]
    path: string
    toleranceSeconds: number
    acceptSplitHeaders: boolean
  }
  dedupeTtlSeconds: number
  bodyLimitBytes: number
  delivery: {
    historyHours: number
    deadLetterRetentionDays: number
  }
  subscribers: SubscriberConfig[]
  shutdownTimeoutMs: number
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((problem) => `  - ${problem}`).join('\n')}`)
    this.name = 'ConfigError'
  }
}

const SUBSCRIBER_KEY = /^SUBSCRIBER_([A-Z0-9_]+?)_(URL|EVENTS|SECRET|TIMEOUT_MS|MAX_ATTEMPTS|CONCURRENCY|RETRY_SCHEDULE)$/

/** Reads the whole configuration from the environment; every bad key is reported in one error. */
export function loadConfig(env: Record<string, string | undefined>): Config {
  const problems: string[] = []
  const global = parseSection(EnvSchema, pick(env, Object.keys(EnvSchema.properties)), '', problems)
  const groups = groupSubscriberKeys(env, problems)
  const subscribers: SubscriberConfig[] = []
  for (const [name, values] of groups) {
    const parsed = parseSection(SubscriberEnvSchema, values, `SUBSCRIBER_${name}_`, problems)
    if (parsed && global) subscribers.push(toSubscriber(name, parsed, global))
  }
  if (!global || problems.length > 0) throw new ConfigError(problems)

  return {
    port: global.PORT,
    host: global.HOST,
    logLevel: global.LOG_LEVEL,
    redis: { url: global.REDIS_URL, prefix: global.REDIS_PREFIX },
    persona: {
      secrets: splitList(global.PERSONA_WEBHOOK_SECRET),
      path: global.PERSONA_WEBHOOK_PATH,
      toleranceSeconds: global.PERSONA_TIMESTAMP_TOLERANCE_SECONDS,
      acceptSplitHeaders: global.PERSONA_ACCEPT_SPLIT_HEADERS
    },
    dedupeTtlSeconds: global.DEDUPE_TTL_SECONDS,
    bodyLimitBytes: global.BODY_LIMIT_BYTES,
    delivery: {
      historyHours: global.DELIVERY_HISTORY_HOURS,
      deadLetterRetentionDays: global.DEAD_LETTER_RETENTION_DAYS
    },
    subscribers: subscribers.sort((a, b) => a.name.localeCompare(b.name)),
    shutdownTimeoutMs: global.SHUTDOWN_TIMEOUT_MS
  }
}

function toSubscriber(name: string, values: SubscriberEnv, global: Env): SubscriberConfig {
  const retrySchedule = splitList(values.RETRY_SCHEDULE ?? global.DELIVERY_RETRY_SCHEDULE).map(Number)
  return {
    name,
    url: values.URL,
    patterns: splitList(values.EVENTS),
    secrets: splitList(values.SECRET ?? ''),
    timeoutMs: values.TIMEOUT_MS ?? global.DELIVERY_TIMEOUT_MS,
    maxAttempts: values.MAX_ATTEMPTS ?? global.DELIVERY_MAX_ATTEMPTS ?? retrySchedule.length + 1,
    concurrency: values.CONCURRENCY ?? global.DELIVERY_CONCURRENCY,
    retrySchedule
  }
}

function groupSubscriberKeys(env: Record<string, string | undefined>, problems: string[]) {
  const groups = new Map<string, Record<string, string>>()
  for (const [key, value] of Object.entries(env)) {
    if (!key.startsWith('SUBSCRIBER_') || value === undefined || value === '') continue
    const match = SUBSCRIBER_KEY.exec(key)
    if (!match) {
      problems.push(`${key}: not a subscriber setting (expected SUBSCRIBER_<NAME>_URL, _EVENTS, _SECRET, _TIMEOUT_MS, _MAX_ATTEMPTS, _CONCURRENCY or _RETRY_SCHEDULE with NAME in [A-Z0-9_])`)
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

export function splitList(value: string): string[] {
  return value.split(',').map((item) => item.trim()).filter((item) => item.length > 0)
}
