import { Redis } from 'ioredis'
import type { App } from '../../src/app.js'
import type { BackfillJob } from '../../src/backfill/jobs.js'
import { ADMIN_TOKEN, admin, type AdminAnswer } from './admin.js'
import { waitUntil } from './wait-until.js'

/** The Persona API settings of a relay whose backfill reads the fake API. */
export function backfillEnv(baseUrl: string, key: string): Record<string, string> {
  return { PERSONA_API_KEY: key, PERSONA_API_BASE_URL: baseUrl }
}

export async function postBackfill(app: App, body: unknown): Promise<AdminAnswer<BackfillJob & { code?: string; message?: string }> & { location?: string }> {
  const response = await app.inject({
    method: 'POST',
    url: '/admin/backfill',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    payload: body as object
  })
  return { statusCode: response.statusCode, body: response.json(), location: response.headers.location as string | undefined }
}

/** Polls GET /admin/backfill/:id until the backfill has finished, and returns its record. */
export async function finishedBackfill(app: App, id: string, timeoutMs = 20_000): Promise<BackfillJob> {
  return waitUntil(`backfill ${id} to finish`, async () => {
    const { statusCode, body } = await admin<BackfillJob>(app, 'GET', `/admin/backfill/${id}`)
    if (statusCode !== 200) throw new Error(`GET /admin/backfill/${id} answered ${statusCode}`)
    return body.status !== 'running' && body
  }, timeoutMs, 50)
}

/** Every key with its serialised value, except those named by `ignore`: to show that nothing else changed. */
export async function redisSnapshot(url: string, ignore: RegExp): Promise<Map<string, string>> {
  const redis = new Redis(url)
  try {
    const keys = (await redis.keys('*')).filter((key) => !ignore.test(key)).sort()
    const snapshot = new Map<string, string>()
    for (const key of keys) snapshot.set(key, ((await redis.dumpBuffer(key)) ?? Buffer.alloc(0)).toString('base64'))
    return snapshot
  } finally {
    redis.disconnect()
  }
}

/** The value of one metric sample, e.g. `persona_relay_backfill_runs_total{result="failed"}`; 0 when absent. */
export async function metricSample(app: App, series: string): Promise<number> {
  const text = (await app.inject({ url: '/metrics' })).body
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `))
  return line ? Number(line.slice(series.length + 1)) : 0
}
