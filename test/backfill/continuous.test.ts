import t from 'tap'
import { Redis } from 'ioredis'
import { FIRST_RUN_LOOKBACK_MS, OVERLAP_MS, SETTLE_MS, scheduledRange } from '../../src/backfill/continuous.js'
import { API_WINDOW_MS } from '../../src/backfill/range.js'
import { startRelay, uniqueEventId } from '../helpers/app.js'
import { backfillEnv } from '../helpers/backfill.js'
import { waitForDelivery } from '../helpers/delivery.js'
import { API_KEY, apiEvent, startPersonaApi } from '../helpers/persona-api.js'
import { startRedis } from '../helpers/redis.js'
import { startSubscriber } from '../helpers/subscriber.js'
import { waitUntil } from '../helpers/wait-until.js'

const NOW = Date.parse('2026-11-27T12:00:00Z')
const HOUR = 3_600_000

t.test('a scheduled run starts at the marker less the overlap, and leaves the last minutes to webhooks', async (t) => {
  t.same(scheduledRange(NOW - HOUR, NOW, API_WINDOW_MS), { sinceMs: NOW - HOUR - OVERLAP_MS, untilMs: NOW - SETTLE_MS })
  t.same(scheduledRange(undefined, NOW, API_WINDOW_MS), { sinceMs: NOW - FIRST_RUN_LOOKBACK_MS, untilMs: NOW - SETTLE_MS }, 'no marker yet')
  t.same(scheduledRange(NOW - 40 * 24 * HOUR, NOW, API_WINDOW_MS), { sinceMs: NOW - API_WINDOW_MS + 1000, untilMs: NOW - SETTLE_MS }, 'never past the window')
  t.same(scheduledRange(undefined, NOW, 2 * HOUR), { sinceMs: NOW - 2 * HOUR + 1000, untilMs: NOW - SETTLE_MS }, 'nor past the de-duplication window')
})

function createdAtMs(item: Record<string, unknown>): number {
  return Date.parse(String((item.attributes as Record<string, unknown>)['created-at']))
}

t.test('BACKFILL_INTERVAL_SECONDS: worker instances take turns under the lock and the marker moves the window', async (t) => {
  const minutesAgo = (minutes: number) => new Date(Date.now() - minutes * 60_000)
  const missed = [uniqueEventId(), uniqueEventId(), uniqueEventId()]
  const young = uniqueEventId()
  const items = [apiEvent(young, minutesAgo(3)), ...missed.map((id, index) => apiEvent(id, minutesAgo(8 + index)))]
  // Slow answers: instances that did not wait for each other would be walking at the same time.
  const api = await startPersonaApi({ items, delayMs: 150 })
  const subscriber = await startSubscriber()
  const redis = await startRedis()
  const client = new Redis(redis.url)
  t.teardown(async () => {
    client.disconnect()
    await Promise.all([api.close(), subscriber.close()])
    await redis.stop()
  })
  const env = {
    ...backfillEnv(api.baseUrl, API_KEY),
    BACKFILL_INTERVAL_SECONDS: '0.1',
    SUBSCRIBER_CRM_URL: subscriber.url,
    SUBSCRIBER_CRM_EVENTS: '*'
  }
  const instances = await Promise.all([
    startRelay(t, { ...env, ROLE: 'worker' }, redis),
    startRelay(t, { ...env, ROLE: 'all' }, redis),
    startRelay(t, { ...env, ROLE: 'intake' }, redis)
  ])
  await subscriber.waitFor(missed.length)
  for (const id of missed) await waitForDelivery(instances[0].app, 'CRM', id, 'completed')
  const marker = await waitUntil('the marker', () => client.get('persona-relay:backfill:newest').then((value) => value ?? undefined))
  t.equal(Number(marker), createdAtMs(items[1]!), 'the newest event backfilled')

  await waitUntil('several scheduled runs', () => api.requests.length >= 6)
  const starts = instances.map(({ logs }) => logs.lines.filter((line) => line.msg === 'backfill started'))
  t.ok(starts[0]!.length > 0 && starts[1]!.length > 0, 'both worker-role instances ran some')
  t.equal(starts[2]!.length, 0, 'the intake role never backfills')
  t.equal(api.maxInFlight(), 1, 'never two walks at once')
  const later = [...starts[0]!, ...starts[1]!].map((line) => Date.parse(String(line.since))).filter((since) => since === Number(marker) - OVERLAP_MS)
  t.ok(later.length > 0, 'later runs start at the marker less the overlap')
  for (const line of [...starts[0]!, ...starts[1]!]) t.match(line, { trigger: 'schedule', dryRun: false })

  t.equal(subscriber.received.length, missed.length, 'each missed event once, however many runs saw it')
  t.notOk(subscriber.received.some((request) => request.headers['webhook-id'] === young), 'an event younger than the settle time is left to its webhook')
  t.equal(await client.exists(`persona-relay:event:${young}`), 0)
})
