import t from 'tap'
import { personaEvent, startRelay, uniqueEventId } from '../helpers/app.js'
import { admin, ADMIN_TOKEN } from '../helpers/admin.js'
import { postEvent } from '../helpers/delivery.js'
import { startSubscriber } from '../helpers/subscriber.js'
import { waitUntil } from '../helpers/wait-until.js'

interface ActivityView { subscriber: string; minutes: { at: string; delivered: number; failed: number }[] }

t.test('each subscriber\'s delivered and failed attempts are counted per minute, in Redis, for the last hour', async (t) => {
  // Each event's first request fails and its retry is delivered: three failed attempts, three delivered.
  const seen = new Set<string>()
  const subscriber = await startSubscriber((request) => {
    const id = JSON.parse(request.body.toString()).data.id as string
    if (seen.has(id)) return { status: 200 }
    seen.add(id)
    return { status: 500 }
  })
  const quiet = await startSubscriber()
  t.teardown(() => Promise.all([subscriber.close(), quiet.close()]))
  const { app } = await startRelay(t, {
    ADMIN_TOKEN,
    SUBSCRIBER_KYC_URL: subscriber.url,
    SUBSCRIBER_KYC_EVENTS: 'inquiry.*',
    SUBSCRIBER_QUIET_URL: quiet.url,
    SUBSCRIBER_QUIET_EVENTS: 'account.*',
    DELIVERY_RETRY_SCHEDULE: '0.05'
  })
  for (let i = 0; i < 3; i++) await postEvent(app, personaEvent(uniqueEventId()))
  const view = await waitUntil('the counts to be flushed', async () => {
    const { body } = await admin<ActivityView>(app, 'GET', '/admin/subscribers/KYC/activity')
    const total = body.minutes.reduce((sum, minute) => ({ delivered: sum.delivered + minute.delivered, failed: sum.failed + minute.failed }), { delivered: 0, failed: 0 })
    return total.delivered === 3 && total.failed === 3 ? body : undefined
  }, 10_000)
  t.equal(view.minutes.length, 60, 'an hour of minutes')
  const times = view.minutes.map((minute) => Date.parse(minute.at))
  t.ok(times.every((time, index) => index === 0 || time - times[index - 1]! === 60_000), 'one a minute, oldest first')
  t.ok(Date.now() - times.at(-1)! < 120_000, 'up to this minute')
  const keys = await app.redis.keys('persona-relay:activity:KYC:*')
  t.ok(keys.length >= 1)
  const ttl = await app.redis.ttl(keys[0]!)
  t.ok(ttl > 3600 && ttl <= 7200, `a minute's counts expire after two hours (${ttl} s)`)
  const other = await admin<ActivityView>(app, 'GET', '/admin/subscribers/QUIET/activity')
  t.ok(other.body.minutes.every((minute) => minute.delivered === 0 && minute.failed === 0), 'a subscriber without attempts has zeros')
  t.equal((await admin(app, 'GET', '/admin/subscribers/NOPE/activity')).body.code, 'SUBSCRIBER_NOT_FOUND')
})
