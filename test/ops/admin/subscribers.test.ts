import t, { type Test } from 'tap'
import type { App } from '../../../src/app.js'
import { personaEvent, startRelay, uniqueEventId } from '../../helpers/app.js'
import { ADMIN_TOKEN, admin, eventView, type DeliveryListView, type SubscriberListView, type SubscriberView } from '../../helpers/admin.js'
import { postEvent, waitForDelivery, waitForJob } from '../../helpers/delivery.js'
import { startSubscriber } from '../../helpers/subscriber.js'
import { waitUntil } from '../../helpers/wait-until.js'

const NEVER_PAUSE = '1000000'

async function subscribers(app: App): Promise<SubscriberView[]> {
  const { statusCode, body } = await admin<SubscriberListView>(app, 'GET', '/admin/subscribers')
  if (statusCode !== 200) throw new Error(`subscriber list answered ${statusCode}`)
  return body.subscribers
}

async function pausedSubscribers(t: Test, app: App): Promise<string[]> {
  const response = await app.inject({ method: 'GET', url: '/readyz' })
  t.equal(response.statusCode, 200, 'a paused subscriber does not make the relay unready')
  return (response.json() as { pausedSubscribers: string[] }).pausedSubscribers
}

t.test('the subscriber list shows settings without credentials, state and delivery counts after real traffic', async (t) => {
  const ok = await startSubscriber()
  const failing = await startSubscriber(() => ({ status: 500 }))
  t.teardown(() => Promise.all([ok.close(), failing.close()]))
  const withCredentials = new URL(ok.url)
  withCredentials.username = 'relay-user'
  withCredentials.password = 'pa55word'
  withCredentials.search = '?token=s3cret-query-token&tenant=acme'
  const { app } = await startRelay(t, {
    ADMIN_TOKEN,
    SUBSCRIBER_CRM_URL: ok.url,
    SUBSCRIBER_CRM_EVENTS: 'inquiry.*, verification.passed',
    SUBSCRIBER_ERP_URL: failing.url,
    SUBSCRIBER_ERP_EVENTS: 'inquiry.*',
    SUBSCRIBER_ERP_MAX_ATTEMPTS: '1',
    SUBSCRIBER_ERP_PAUSE_AFTER_FAILURES: NEVER_PAUSE,
    SUBSCRIBER_LATER_URL: failing.url,
    SUBSCRIBER_LATER_EVENTS: 'report.*',
    SUBSCRIBER_LATER_RETRY_SCHEDULE: '300',
    SUBSCRIBER_SECURE_URL: withCredentials.toString(),
    SUBSCRIBER_SECURE_EVENTS: 'never.*'
  })
  t.same((await subscribers(app)).map((subscriber) => subscriber.counts), Array(4).fill({ pending: 0, delayed: 0, active: 0, completed: 0, failed: 0 }))

  const inquiries = [uniqueEventId(), uniqueEventId(), uniqueEventId()]
  for (const id of inquiries) await postEvent(app, personaEvent(id, 'inquiry.approved'))
  const report = uniqueEventId()
  await postEvent(app, personaEvent(report, 'report.ready'))
  await Promise.all([
    ...inquiries.flatMap((id) => [waitForDelivery(app, 'CRM', id, 'completed'), waitForJob(app, 'ERP', id, 'failed')]),
    waitForJob(app, 'LATER', report, 'delayed')
  ])

  const list = await subscribers(app)
  t.same(list.map((subscriber) => subscriber.name), ['CRM', 'ERP', 'LATER', 'SECURE'])
  t.same(list[0], {
    name: 'CRM',
    url: ok.url,
    patterns: ['inquiry.*', 'verification.passed'],
    state: 'active',
    consecutiveFailures: 0,
    oldestWaitingMs: 0,
    counts: { pending: 0, delayed: 0, active: 0, completed: 3, failed: 0 }
  })
  t.match(list[1], { name: 'ERP', state: 'active', consecutiveFailures: 3, counts: { pending: 0, delayed: 0, active: 0, completed: 0, failed: 3 } })
  t.match(list[2], { name: 'LATER', state: 'active', consecutiveFailures: 1, counts: { pending: 0, delayed: 1, active: 0, completed: 0, failed: 0 } })
  const secure = list[3]!
  t.equal(secure.url, `http://127.0.0.1:${withCredentials.port}/hook?token=redacted&tenant=redacted`)
  for (const credential of ['relay-user', 'pa55word', 's3cret-query-token']) t.notOk(secure.url.includes(credential), `no ${credential} in ${secure.url}`)
  t.notOk(JSON.stringify(list).includes('pa55word'))
})

t.test('a manually paused subscriber holds its deliveries, shows paused everywhere, and delivers them once resumed', async (t) => {
  const subscriber = await startSubscriber()
  const other = await startSubscriber()
  t.teardown(() => Promise.all([subscriber.close(), other.close()]))
  const { app, logs } = await startRelay(t, {
    ADMIN_TOKEN,
    SUBSCRIBER_CRM_URL: subscriber.url,
    SUBSCRIBER_CRM_EVENTS: '*',
    SUBSCRIBER_OTHER_URL: other.url,
    SUBSCRIBER_OTHER_EVENTS: '*'
  })
  t.same(await pausedSubscribers(t, app), [])

  const paused = await admin<SubscriberView>(app, 'POST', '/admin/subscribers/CRM/pause')
  t.equal(paused.statusCode, 200)
  t.match(paused.body, { name: 'CRM', state: 'paused', pauseReason: 'manual', pausedSince: String })
  t.ok(Math.abs(Date.parse(paused.body.pausedSince!) - Date.now()) < 5000, 'paused since just now')
  t.same(await pausedSubscribers(t, app), ['CRM'])
  t.ok(logs.lines.some((line) => line.msg === 'subscriber paused' && line.subscriber === 'CRM' && line.reason === 'manual'))

  const ids = [uniqueEventId(), uniqueEventId()]
  for (const id of ids) await postEvent(app, personaEvent(id))
  await Promise.all(ids.map((id) => waitForDelivery(app, 'OTHER', id, 'completed')))
  await Promise.all(ids.map((id) => waitForJob(app, 'CRM', id, 'waiting')))
  // Proving that nothing is sent takes a wait; the other subscriber got both meanwhile.
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(subscriber.received.length, 0, 'nothing is sent to a paused subscriber')

  t.match((await eventView(app, ids[0]!)).deliveries, [
    { id: `CRM.${ids[0]}`, state: 'paused', attemptsMade: 0, attempts: [] },
    { id: `OTHER.${ids[0]}`, state: 'completed' }
  ])
  const listed = await admin<DeliveryListView>(app, 'GET', '/admin/deliveries?state=paused')
  t.same(listed.body.items.map((item) => [item.id, item.state]).sort(), ids.map((id) => [`CRM.${id}`, 'paused']).sort())
  t.same((await admin(app, 'GET', '/admin/deliveries?state=pending')).body, { items: [] }, 'a paused delivery is not pending')
  t.match((await subscribers(app))[0], { name: 'CRM', state: 'paused', pauseReason: 'manual', counts: { pending: 2, completed: 0 } })

  const again = await admin<SubscriberView>(app, 'POST', '/admin/subscribers/CRM/pause')
  t.match(again.body, { state: 'paused', pauseReason: 'manual' }, 'pausing twice is harmless')

  const resumed = await admin<SubscriberView>(app, 'POST', '/admin/subscribers/CRM/resume')
  t.equal(resumed.statusCode, 200)
  t.match(resumed.body, { name: 'CRM', state: 'active', consecutiveFailures: 0 })
  t.notOk('pauseReason' in resumed.body || 'pausedSince' in resumed.body)
  await subscriber.waitFor(2)
  await Promise.all(ids.map((id) => waitForDelivery(app, 'CRM', id, 'completed')))
  t.same(new Set(subscriber.received.map((request) => request.headers['webhook-id'])), new Set(ids))
  t.same(await pausedSubscribers(t, app), [])
  t.match((await eventView(app, ids[1]!)).deliveries, [{ state: 'completed', attemptsMade: 1 }, { state: 'completed' }])
  t.match((await subscribers(app))[0], { state: 'active', counts: { pending: 0, completed: 2 } })
  t.ok(logs.lines.some((line) => line.msg === 'subscriber resumed' && line.subscriber === 'CRM' && line.by === 'manual'))
})

t.test('a delivery waiting for its retry when the subscriber is paused shows paused with its due time and goes out after resume', async (t) => {
  const subscriber = await startSubscriber((_request, n) => ({ status: n === 1 ? 500 : 200 }))
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, {
    ADMIN_TOKEN,
    SUBSCRIBER_CRM_URL: subscriber.url,
    SUBSCRIBER_CRM_EVENTS: '*',
    SUBSCRIBER_CRM_RETRY_SCHEDULE: '1.5'
  })
  const id = uniqueEventId()
  await postEvent(app, personaEvent(id))
  await waitForJob(app, 'CRM', id, 'delayed')
  t.equal((await admin(app, 'POST', '/admin/subscribers/CRM/pause')).statusCode, 200)

  const [delivery] = (await eventView(app, id)).deliveries
  t.match(delivery, { state: 'paused', attemptsMade: 1, attempts: [{ attempt: 1, status: 500 }] })
  const dueIn = Date.parse(delivery!.nextAttemptAt!) - Date.parse(delivery!.attempts[0]!.at)
  t.ok(dueIn >= 1200 && dueIn <= 2000, `due on the retry schedule (${dueIn} ms after the attempt)`)
  const listed = await admin<DeliveryListView>(app, 'GET', '/admin/deliveries?state=paused')
  t.same(listed.body.items.map((item) => [item.id, item.nextAttemptAt]), [[`CRM.${id}`, delivery!.nextAttemptAt]])
  t.same((await admin(app, 'GET', '/admin/deliveries?state=delayed')).body, { items: [] })

  t.equal((await admin(app, 'POST', '/admin/subscribers/CRM/resume')).statusCode, 200)
  await waitForDelivery(app, 'CRM', id, 'completed')
  t.same(subscriber.received.map((request) => request.headers['persona-relay-attempt']), ['1', '2'])
})

t.test('a subscriber paused by its circuit breaker says so, and a manual resume clears its failures', async (t) => {
  const subscriber = await startSubscriber(() => ({ status: 502 }))
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, {
    ADMIN_TOKEN,
    SUBSCRIBER_CRM_URL: subscriber.url,
    SUBSCRIBER_CRM_EVENTS: '*',
    SUBSCRIBER_CRM_MAX_ATTEMPTS: '1',
    SUBSCRIBER_CRM_PAUSE_AFTER_FAILURES: '2'
  })
  for (let index = 0; index < 2; index += 1) await postEvent(app, personaEvent(uniqueEventId()))
  const [tripped] = await waitUntil('the breaker to pause the subscriber', async () => {
    const list = await subscribers(app)
    return list[0]?.state === 'paused' && list
  })
  t.match(tripped, { name: 'CRM', state: 'paused', pauseReason: 'breaker', pausedSince: String, consecutiveFailures: 2 })
  t.same(await pausedSubscribers(t, app), ['CRM'])

  const resumed = await admin<SubscriberView>(app, 'POST', '/admin/subscribers/CRM/resume')
  t.match(resumed.body, { state: 'active', consecutiveFailures: 0, counts: { failed: 2 } })
  t.same(await pausedSubscribers(t, app), [])
})

t.test('pausing or resuming an unknown subscriber is 404 and a malformed name 400', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, { ADMIN_TOKEN, SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' })
  for (const action of ['pause', 'resume']) {
    t.same(await admin(app, 'POST', `/admin/subscribers/NOPE/${action}`), {
      statusCode: 404,
      body: { statusCode: 404, code: 'SUBSCRIBER_NOT_FOUND', error: 'Not Found', message: 'No such subscriber is configured' }
    })
    for (const name of ['crm', 'CRM-1', 'C.RM']) {
      const { statusCode, body } = await admin(app, 'POST', `/admin/subscribers/${name}/${action}`)
      t.equal(statusCode, 400, `${action} ${name}`)
      t.equal(body.code, 'INVALID_REQUEST')
    }
  }
  t.same(await pausedSubscribers(t, app), [])
})

t.test('the subscriber list shows ordering settings, and how long the oldest waiting delivery has waited', async (t) => {
  const { app } = await startRelay(t, {
    ADMIN_TOKEN,
    SUBSCRIBER_KYC_URL: 'http://127.0.0.1:1/hook',
    SUBSCRIBER_KYC_EVENTS: '*',
    SUBSCRIBER_KYC_ORDERING: 'object',
    SUBSCRIBER_KYC_ORDERING_WINDOW_MS: '250',
    SUBSCRIBER_KYC_STALE: 'skip'
  })
  await app.delivery.queues.get('KYC')!.pause()
  await postEvent(app, personaEvent(uniqueEventId(), 'inquiry.approved'))
  await new Promise((resolve) => setTimeout(resolve, 400))
  const [kyc] = await subscribers(app)
  t.same(kyc!.ordering, { windowMs: 250, stale: 'skip' })
  t.ok(kyc!.oldestWaitingMs >= 300, `the paused queue's delivery has waited (${kyc!.oldestWaitingMs} ms)`)
})
