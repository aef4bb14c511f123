import { Writable } from 'node:stream'
import type { Test } from 'tap'
import { buildApp, type App } from '../../src/app.js'
import { loadConfig, type Config } from '../../src/config/index.js'
import { signatureHeader } from '../../src/persona/signature.js'
import { startRedis, type TestRedis } from './redis.js'

export const SECRET = 'wbhsec_11111111-2222-3333-4444-555555555555'

/** The environment of a relay on the given Redis, with fast retries so tests need not wait. */
export function testEnv(redis: TestRedis, overrides: Record<string, string> = {}): Record<string, string> {
  return {
    REDIS_URL: redis.url,
    PERSONA_WEBHOOK_SECRET: SECRET,
    LOG_LEVEL: 'info',
    DELIVERY_RETRY_SCHEDULE: '0.05',
    DELIVERY_TIMEOUT_MS: '2000',
    ...overrides
  }
}

export interface LogCapture {
  lines: Record<string, unknown>[]
  text(): string
}

export function captureLogs(): { stream: Writable; capture: LogCapture } {
  const raw: string[] = []
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      raw.push(chunk.toString())
      callback()
    }
  })
  return {
    stream,
    capture: {
      get lines() {
        return raw.join('').split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>)
      },
      text: () => raw.join('')
    }
  }
}

export interface TestRelay {
  app: App
  config: Config
  redis: TestRedis
  logs: LogCapture
}

/** A relay built by buildApp on a throwaway Redis; both are closed when the test ends. */
export async function startRelay(t: Test, overrides: Record<string, string> = {}, redis?: TestRedis): Promise<TestRelay> {
  const ownRedis = redis ?? (await startRedis())
  const relay = await buildRelay(testEnv(ownRedis, overrides))
  t.teardown(async () => {
    await relay.app.close()
    if (!redis) await ownRedis.stop()
  })
  return { ...relay, redis: ownRedis }
}

/** A relay built by buildApp from exactly this environment (a cluster's or sentinels' included); closed when the test ends. */
export async function startRelayWith(t: Test, env: Record<string, string>): Promise<Omit<TestRelay, 'redis'>> {
  const relay = await buildRelay(env)
  t.teardown(() => relay.app.close())
  return relay
}

async function buildRelay(env: Record<string, string>): Promise<Omit<TestRelay, 'redis'>> {
  const config = loadConfig(env)
  const { stream, capture } = captureLogs()
  const app = await buildApp(config, { logStream: stream })
  await app.ready()
  return { app, config, logs: capture }
}

export function personaEvent(id: string, name = 'inquiry.approved', extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    data: {
      type: 'event',
      id,
      attributes: { name, 'created-at': '2026-11-27T10:00:00.000Z', payload: { data: { type: 'inquiry', id: 'inq_test' } }, ...extra }
    }
  })
}

export function signedHeaders(body: string | Buffer, options: { secrets?: string[]; timestamp?: number } = {}) {
  const timestamp = options.timestamp ?? Math.floor(Date.now() / 1000)
  return {
    'content-type': 'application/json',
    'persona-signature': signatureHeader(options.secrets ?? [SECRET], timestamp, Buffer.from(body))
  }
}

let counter = 0
export function uniqueEventId(): string {
  counter += 1
  return `evt_test${process.pid}x${Date.now().toString(36)}x${counter}`
}
