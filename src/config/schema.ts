import Type, { type Static } from 'typebox'

const Port = Type.Integer({ minimum: 1, maximum: 65535 })
const PositiveInteger = Type.Integer({ minimum: 1 })
// At least one item that is neither a comma nor a space: `PERSONA_WEBHOOK_SECRET=","` would otherwise mean no secret.
const CommaList = Type.String({ pattern: '[^\\s,]' })
const HostPortList = Type.String({ pattern: '^\\s*[^\\s,:]+:\\d{1,5}\\s*(,\\s*[^\\s,:]+:\\d{1,5}\\s*)*$' })
const RetrySchedule = Type.String({ pattern: '^\\s*\\d+(\\.\\d+)?\\s*(,\\s*\\d+(\\.\\d+)?\\s*)*$' })

/**
 * The process environment the relay reads. Values arrive as strings and are converted before they
 * are checked; subscribers (`SUBSCRIBER_<NAME>_*`) are dynamic and grouped by NAME in index.ts.
 */
export const EnvSchema = Type.Object({
  PORT: Type.Integer({ ...Port, default: 3000 }),
  HOST: Type.String({ pattern: '^\\S+$', default: '0.0.0.0' }),
  LOG_LEVEL: Type.Enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], { default: 'info' }),
  /** One node (the default mode). Exactly one of REDIS_URL, REDIS_CLUSTER_NODES and REDIS_SENTINELS is read (config/redis.ts). */
  REDIS_URL: Type.Optional(Type.String({ pattern: '^rediss?://' })),
  REDIS_CLUSTER_NODES: Type.Optional(HostPortList),
  REDIS_SENTINELS: Type.Optional(HostPortList),
  REDIS_SENTINEL_NAME: Type.Optional(Type.String({ pattern: '^\\S+$' })),
  /** Credentials of the data nodes in cluster and sentinel modes; a REDIS_URL carries its own. */
  REDIS_USERNAME: Type.Optional(Type.String({ pattern: '^\\S+$' })),
  REDIS_PASSWORD: Type.Optional(Type.String({ minLength: 1 })),
  REDIS_SENTINEL_USERNAME: Type.Optional(Type.String({ pattern: '^\\S+$' })),
  REDIS_SENTINEL_PASSWORD: Type.Optional(Type.String({ minLength: 1 })),
  /** TLS to the data nodes (and sentinels) in cluster and sentinel modes; a REDIS_URL says rediss://. */
  REDIS_TLS: Type.Boolean({ default: false }),
  /** A PEM file of the CA that signed the servers' certificates, when it is not a public one. */
  REDIS_TLS_CA_FILE: Type.Optional(Type.String({ minLength: 1 })),
  /** Intake streams the events are spread over by id: 16 by default in cluster mode, 1 otherwise. */
  INTAKE_PARTITIONS: Type.Optional(Type.Integer({ minimum: 1, maximum: 256 })),
  /** Replicas that must have an event before Persona gets its 2xx (Redis WAIT); 0 waits for none. */
  REDIS_WAIT_REPLICAS: Type.Integer({ minimum: 0, maximum: 16, default: 0 }),
  REDIS_WAIT_TIMEOUT_MS: Type.Integer({ minimum: 1, maximum: 4000, default: 1000 }),
  REDIS_PREFIX: Type.String({ pattern: '^[A-Za-z0-9_.-]+$', default: 'persona-relay' }),
  PERSONA_WEBHOOK_SECRET: CommaList,
  PERSONA_WEBHOOK_PATH: Type.String({ pattern: '^/[A-Za-z0-9_./-]*$', default: '/webhooks/persona' }),
  PERSONA_TIMESTAMP_TOLERANCE_SECONDS: Type.Integer({ ...PositiveInteger, default: 300 }),
  PERSONA_ACCEPT_SPLIT_HEADERS: Type.Boolean({ default: false }),
  DEDUPE_TTL_SECONDS: Type.Integer({ ...PositiveInteger, default: 604800 }),
  BODY_LIMIT_BYTES: Type.Integer({ ...PositiveInteger, default: 1048576 }),
  /** Whole-request deadline, headers and body; a client slower than this gets 408 and is closed. */
  REQUEST_TIMEOUT_MS: Type.Integer({ minimum: 1000, default: 15000 }),
  /** Open connections one instance accepts; past it new ones are closed at once. */
  MAX_CONNECTIONS: Type.Integer({ ...PositiveInteger, default: 2048 }),
  DELIVERY_TIMEOUT_MS: Type.Integer({ ...PositiveInteger, default: 10000 }),
  DELIVERY_RETRY_SCHEDULE: Type.String({ ...RetrySchedule, default: '5,30,120,600,1800,3600,10800,21600,43200,86400' }),
  DELIVERY_MAX_ATTEMPTS: Type.Optional(PositiveInteger),
  DELIVERY_CONCURRENCY: Type.Integer({ ...PositiveInteger, default: 10 }),
  DELIVERY_HISTORY_HOURS: Type.Number({ exclusiveMinimum: 0, default: 24 }),
  DEAD_LETTER_RETENTION_DAYS: Type.Number({ exclusiveMinimum: 0, default: 14 }),
  RETENTION_SWEEP_INTERVAL_SECONDS: Type.Number({ exclusiveMinimum: 0, default: 300 }),
  DELIVERY_PAUSE_AFTER_FAILURES: Type.Integer({ ...PositiveInteger, default: 20 }),
  /**
   * How long a worker's claim on a delivery lasts without renewal, and so how soon the deliveries of
   * a crashed worker go back to the queue. Unset: max(30 s, 2 x the subscriber's timeout).
   */
  DELIVERY_LOCK_DURATION_MS: Type.Optional(Type.Integer({ minimum: 1000 })),
  BREAKER_PROBE_INTERVAL_SECONDS: Type.Number({ exclusiveMinimum: 0, default: 30 }),
  METRICS_PORT: Type.Optional(Port),
  ROLE: Type.Enum(['all', 'intake', 'worker'], { default: 'all' }),
  /** Addresses and CIDRs, comma-separated; entries are checked one by one in index.ts. */
  PERSONA_ALLOWED_IPS: Type.Optional(CommaList),
  /**
   * Fastify's trustProxy: true, false, or comma-separated addresses/CIDRs of proxies (checked in
   * index.ts). Not a hop count: Fastify 5 ignores one, as it cannot tell a proxy from a client.
   */
  TRUST_PROXY: Type.String({ pattern: '^\\S+$', default: 'false' }),
  ADMIN_TOKEN: Type.Optional(Type.String({ pattern: '^\\S{16,}$' })),
  SHUTDOWN_TIMEOUT_MS: Type.Integer({ ...PositiveInteger, default: 20000 }),
  /** Enables backfill from Persona's Events API. */
  PERSONA_API_KEY: Type.Optional(Type.String({ pattern: '^\\S+$' })),
  PERSONA_API_BASE_URL: Type.String({ pattern: '^https?://[^\\s/?#]+/?$', default: 'https://api.withpersona.com' }),
  PERSONA_API_VERSION: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9._-]+$' })),
  PERSONA_API_KEY_INFLECTION: Type.Optional(Type.Enum(['camel', 'kebab', 'snake'])),
  /** Continuous backfill in the worker role; unset, backfill runs only when asked. */
  BACKFILL_INTERVAL_SECONDS: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
  // OpenTelemetry's own variables (the SDK reads the rest, OTEL_BSP_* and OTEL_EXPORTER_OTLP_HEADERS among them).
  OTEL_EXPORTER_OTLP_ENDPOINT: Type.Optional(Type.String({ pattern: '^https?://' })),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: Type.Optional(Type.String({ pattern: '^https?://' })),
  OTEL_EXPORTER_OTLP_PROTOCOL: Type.Enum(['http/protobuf', 'http/json'], { default: 'http/protobuf' }),
  OTEL_SERVICE_NAME: Type.String({ minLength: 1, default: 'persona-relay' }),
  OTEL_SDK_DISABLED: Type.Boolean({ default: false })
})

export type Env = Static<typeof EnvSchema>

export const SubscriberEnvSchema = Type.Object({
  URL: Type.String({ pattern: '^https?://[^\\s/?#]+' }),
  EVENTS: Type.String({ pattern: '^\\s*[A-Za-z0-9._/*-]+\\s*(,\\s*[A-Za-z0-9._/*-]+\\s*)*$' }),
  SECRET: Type.Optional(
    Type.String({ pattern: '^\\s*whsec_[A-Za-z0-9+/]+={0,2}\\s*(,\\s*whsec_[A-Za-z0-9+/]+={0,2}\\s*)*$' })
  ),
  TIMEOUT_MS: Type.Optional(PositiveInteger),
  MAX_ATTEMPTS: Type.Optional(PositiveInteger),
  CONCURRENCY: Type.Optional(PositiveInteger),
  RETRY_SCHEDULE: Type.Optional(RetrySchedule),
  PAUSE_AFTER_FAILURES: Type.Optional(PositiveInteger),
  /** JSON; checked as a query by config/filter.ts. */
  FILTER: Type.Optional(Type.String()),
  /** `<n>/s` or `<n>/m`. */
  RATE_LIMIT: Type.Optional(Type.String({ pattern: '^\\s*[1-9]\\d{0,5}\\s*/\\s*[sm]\\s*$' })),
  ORDERING: Type.Optional(Type.Union([Type.Literal('none'), Type.Literal('object')])),
  ORDERING_WINDOW_MS: Type.Optional(Type.Integer({ minimum: 0, maximum: 3_600_000 })),
  STALE: Type.Optional(Type.Union([Type.Literal('deliver'), Type.Literal('skip')]))
})

export type SubscriberEnv = Static<typeof SubscriberEnvSchema>
