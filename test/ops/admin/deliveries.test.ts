import t from 'tap'
import { deliveryCounts } from '../../../src/delivery/deliveries.js'
import type { App } from '../../../src/app.js'
import { personaEvent, startRelay, uniqueEventId } from '../../helpers/app.js'
import { ADMIN_TOKEN, admin, eventView, type DeliveryListView } from '../../helpers/admin.js'
import { closeServer, listenOn, postEvent, waitForDelivery, waitForJob } from '../../helpers/delivery.js'
import { startSubscriber } from '../../helpers/subscriber.js'
import { waitUntil } from '../../helpers/wait-until.js'

const NEVER_PAUSE = '1000000'

/** Subscriber settings that fail a delivery at its first unsuccessful attempt and never trip the breaker. */
function failFast(name: string, url: string, events: string): Record<string, string> {
  return {
    [`SUBSCRIBER_${name}_URL`]: url,
    [`SUBSCRIBER_${name}_EVENTS`]: events,
    [`SUBSCRIBER_${name}_MAX_ATTEMPTS`]: '1',
    [`SUBSCRIBER_${name}_PAUSE_AFTER_FAILURES`]: NEVER_PAUSE
  }
}

/** Completed deliveries from the completion store, the others from the subscriber's queue. */
async function counts(app: App, subscriber: string) {
  return deliveryCounts(app.delivery.queues.get(subscriber)!, app.delivery.completions, subscriber, ['wait', 'delayed', 'active', 'completed', 'failed'])
}

async function waitForCount(app: App, subscriber: string, state: 'completed' | 'failed', count: number, timeoutMs = 20_000) {
  await waitUntil(`${count} ${state} deliveries of ${subscriber}`, async () => {
    const now = await counts(app, subscriber)
    return now[state] === count && now.wait === 0 && now.active === 0 && now.delayed === 0
  }, timeoutMs)
}

/** Follows nextCursor from the first page to the last. */
async function allPages(app: App, query: string) {
  const pages: DeliveryListView[] = []
  let cursor: string | undefined
  do {
    const { statusCode, body } = await admin<DeliveryListView>(app, 'GET', `/admin/deliveries?${query}${cursor ? `&cursor=${cursor}` : ''}`)
    if (statusCode !== 200) throw new Error(`list answered ${statusCode}: ${JSON.stringify(body)}`)
    pages.push(body)
    cursor = body.nextCursor
  } while (cursor !== undefined && pages.length < 100)
  return pages
}

/** Fails with a message instead of leaving the test to its timeout when `promise` never settles. */
async function withDeadline<T>(what: string, promise: Promise<T>, timeoutMs = 15_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${timeoutMs} ms`)), timeoutMs)
  })
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer))
}

function isNewestFirst(times: (string | undefined)[]): boolean {
  return times.every((time, index) => index === 0 || Date.parse(time!) <= Date.parse(times[index - 1]!))
}

t.test('failed deliveries are listed newest first, by subscriber, and every page of a listing holds each exactly once', async (t) => {
  const failing = await startSubscriber(() => ({ status: 500 }))
  const ok = await startSubscriber()
  t.teardown(() => Promise.all([failing.close(), ok.close()]))
  const { app } = await startRelay(t, {
    ADMIN_TOKEN,
    ...failFast('ALPHA', failing.url, 'alpha.*'),
    ...failFast('BETA', failing.url, 'beta.*'),
    SUBSCRIBER_OK_URL: ok.url,
    SUBSCRIBER_OK_EVENTS: 'gamma.*'
  })
  const expected = new Map<string, string>()
  for (let index = 0; index < 12; index += 1) {
    const id = uniqueEventId()
    const subscriber = index % 3 === 0 ? 'BETA' : 'ALPHA'
    await postEvent(app, personaEvent(id, subscriber === 'BETA' ? 'beta.happened' : 'alpha.happened'))
    expected.set(`${subscriber}.${id}`, subscriber)
  }
  const completedId = uniqueEventId()
  await postEvent(app, personaEvent(completedId, 'gamma.happened'))
  await Promise.all([waitForCount(app, 'ALPHA', 'failed', 8), waitForCount(app, 'BETA', 'failed', 4), waitForDelivery(app, 'OK', completedId, 'completed')])

  const [whole] = await allPages(app, '')
  t.equal(whole!.items.length, 12, 'state defaults to failed')
  t.notOk('nextCursor' in whole!, 'one page holds them all')
  t.same(new Set(whole!.items.map((item) => item.id)), new Set(expected.keys()))
  t.ok(whole!.items.every((item) => item.state === 'failed' && item.deadLetterReason === 'exhausted' && item.attempts.length === 1))
  t.ok(isNewestFirst(whole!.items.map((item) => item.finishedAt)), 'newest failure first')
  t.same(whole!.items.map((item) => item.id), (await allPages(app, 'state=failed&limit=200'))[0]!.items.map((item) => item.id))

  for (const limit of [1, 5, 12]) {
    const pages = await allPages(app, `limit=${limit}`)
    t.equal(pages.length, Math.ceil(12 / limit), `limit ${limit}: ${pages.length} pages`)
    t.ok(pages.every((page, index) => page.items.length === (index < pages.length - 1 ? limit : 12 - limit * (pages.length - 1))))
    t.same(pages.flatMap((page) => page.items.map((item) => item.id)), whole!.items.map((item) => item.id), `limit ${limit}: each once, in order`)
  }

  const beta = await allPages(app, 'subscriber=BETA&limit=3')
  t.same(beta.map((page) => page.items.length), [3, 1])
  t.same(beta.flatMap((page) => page.items.map((item) => item.id)), whole!.items.filter((item) => item.subscriber === 'BETA').map((item) => item.id))

  const completed = await admin<DeliveryListView>(app, 'GET', '/admin/deliveries?state=completed')
  t.match(completed.body, { items: [{ id: `OK.${completedId}`, state: 'completed', attemptsMade: 1 }] })
  t.equal(completed.body.items.length, 1)
  t.same((await admin(app, 'GET', '/admin/deliveries?state=failed&subscriber=OK')).body, { items: [] })
  t.same((await admin(app, 'GET', '/admin/deliveries?cursor=500')).body, { items: [] }, 'a cursor past the end is an empty page')
})

t.test('completed deliveries are listed newest first whether delivered at once or after a retry, and every page holds each exactly once', async (t) => {
  // Every other event is answered 500 the first time: those complete through their queue after a
  // retry, the others on fan-out's first attempt; both end in the completion store.
  const ids = Array.from({ length: 6 }, () => uniqueEventId())
  const retried = new Set(ids.filter((_id, index) => index % 2 === 0))
  const seen = new Set<string>()
  const subscriber = await startSubscriber((request) => {
    const id = String(request.headers['webhook-id'])
    const first = !seen.has(id)
    seen.add(id)
    return { status: first && retried.has(id) ? 500 : 200 }
  })
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, { ADMIN_TOKEN, SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' })
  // One at a time, so that they finish in the order they were posted.
  for (const id of ids) {
    await postEvent(app, personaEvent(id))
    await waitForDelivery(app, 'CRM', id, 'completed')
  }
  const queue = app.delivery.queues.get('CRM')!
  t.same(await Promise.all(ids.map(async (id) => Boolean(await queue.getJob(id)))), ids.map(() => false),
    'a completed delivery is no job, whichever attempt delivered it')
  const newestFirst = [...ids].reverse()

  const [whole] = await allPages(app, 'state=completed')
  t.same(whole!.items.map((item) => item.eventId), newestFirst, 'both kinds merged, newest first')
  t.same(whole!.items.map((item) => item.attemptsMade), newestFirst.map((id) => (retried.has(id) ? 2 : 1)))
  t.ok(whole!.items.every((item) => item.state === 'completed' && item.attempts.length === item.attemptsMade && item.attempts.at(-1)!.outcome === 'success'))
  t.ok(isNewestFirst(whole!.items.map((item) => item.finishedAt)), 'newest completion first')

  for (const limit of [1, 4]) {
    const pages = await allPages(app, `state=completed&subscriber=CRM&limit=${limit}`)
    t.equal(pages.length, Math.ceil(6 / limit), `limit ${limit}: ${pages.length} pages`)
    t.same(pages.flatMap((page) => page.items.map((item) => item.eventId)), newestFirst, `limit ${limit}: each once, in order`)
  }
})

t.test('delayed deliveries page through every one exactly once, latest due first, whatever order they were queued in', async (t) => {
  // The first event waits longest: queue order and due order disagree.
  const retryAfter = ['300', '200', '100']
  const subscriber = await listenOn(0, () => ({ status: 503, headers: { 'retry-after': retryAfter[subscriber.received.length - 1] ?? '1' } }))
  t.teardown(() => closeServer(subscriber.server))
  const { app } = await startRelay(t, {
    ADMIN_TOKEN,
    SUBSCRIBER_CRM_URL: `http://127.0.0.1:${subscriber.port}/hook`,
    SUBSCRIBER_CRM_EVENTS: '*',
    SUBSCRIBER_CRM_MAX_ATTEMPTS: '5'
  })
  const ids: string[] = []
  for (let index = 0; index < 3; index += 1) {
    ids.push(uniqueEventId())
    await postEvent(app, personaEvent(ids[index]!))
    await waitForJob(app, 'CRM', ids[index]!, 'delayed')
  }

  const pages = await allPages(app, 'state=delayed&limit=1')
  t.same(pages.flatMap((page) => page.items.map((item) => item.eventId)), ids, 'due in 300 s, 200 s, 100 s')
  const due = pages.map((page) => Date.parse(page.items[0]!.nextAttemptAt!) - Date.parse(page.items[0]!.attempts[0]!.at))
  t.ok(due.every((ms, index) => ms >= Number(retryAfter[index]) * 1000 && ms < Number(retryAfter[index]) * 1000 + 1000), `due as asked: ${due}`)
  t.ok(pages.every((page) => page.items[0]!.state === 'delayed'))
  t.same((await admin(app, 'GET', '/admin/deliveries?state=pending')).body, { items: [] })
  t.same((await admin(app, 'GET', '/admin/deliveries?state=paused')).body, { items: [] }, 'nothing is paused')
})

t.test('listing an unknown subscriber is 404 and a bad state, limit, cursor or subscriber is 400', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, { ADMIN_TOKEN, SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' })

  t.same(await admin(app, 'GET', '/admin/deliveries?subscriber=NOPE'), {
    statusCode: 404,
    body: { statusCode: 404, code: 'SUBSCRIBER_NOT_FOUND', error: 'Not Found', message: 'No such subscriber is configured' }
  })
  for (const query of ['state=bogus', 'state=FAILED', 'limit=0', 'limit=201', 'limit=abc', 'cursor=-1', 'cursor=abc', 'cursor=99999999999999999999', 'subscriber=crm']) {
    const { statusCode, body } = await admin(app, 'GET', `/admin/deliveries?${query}`)
    t.equal(statusCode, 400, query)
    t.equal(body.code, 'INVALID_REQUEST')
  }
  for (const query of ['limit=1', 'limit=200', 'state=active', 'state=completed', 'state=delayed', 'state=pending', 'state=paused', 'subscriber=CRM']) {
    t.equal((await admin(app, 'GET', `/admin/deliveries?${query}`)).statusCode, 200, query)
  }
})

t.test('retrying a failed delivery re-queues it with a fresh budget, delivers it and keeps both histories', async (t) => {
  const subscriber = await startSubscriber((_request, n) => (n <= 2 ? { status: 500, body: `fail ${n}` } : { status: 200, body: 'ok', delayMs: n === 3 ? 300 : 0 }))
  t.teardown(() => subscriber.close())
  const { app, logs } = await startRelay(t, {
    ADMIN_TOKEN,
    SUBSCRIBER_CRM_URL: subscriber.url,
    SUBSCRIBER_CRM_EVENTS: '*',
    SUBSCRIBER_CRM_MAX_ATTEMPTS: '2'
  })
  const id = uniqueEventId()
  await postEvent(app, personaEvent(id))
  await waitForJob(app, 'CRM', id, 'failed')

  const retried = await admin(app, 'POST', `/admin/deliveries/CRM.${id}/retry`)
  t.equal(retried.statusCode, 202)
  t.match(retried.body, { id: `CRM.${id}`, state: /^(pending|active)$/, attemptsMade: 0, maxAttempts: 2 })
  t.match(retried.body.attempts, [{ attempt: 1, status: 500 }, { attempt: 2, status: 500 }], 'the history is kept')
  for (const field of ['failedReason', 'deadLetterReason', 'finishedAt']) t.notOk(field in retried.body, `no ${field}`)
  t.ok(logs.lines.some((line) => line.msg === 'admin: delivery re-queued' && line.delivery === `CRM.${id}`))

  await waitForDelivery(app, 'CRM', id, 'completed')
  t.same(subscriber.received.map((request) => request.headers['persona-relay-attempt']), ['1', '2', '1'])
  const [delivery] = (await eventView(app, id)).deliveries
  t.match(delivery, {
    state: 'completed',
    attemptsMade: 1,
    attempts: [
      { attempt: 1, outcome: 'http_error', status: 500, response: 'fail 1' },
      { attempt: 2, outcome: 'http_error', status: 500, response: 'fail 2' },
      { attempt: 1, outcome: 'success', status: 200, response: 'ok' }
    ]
  })
  t.equal(delivery!.attempts.length, 3)

  const again = await admin(app, 'POST', `/admin/deliveries/CRM.${id}/retry`)
  t.same(again, {
    statusCode: 409,
    body: { statusCode: 409, code: 'DELIVERY_NOT_FAILED', error: 'Conflict', message: 'Only a failed delivery can be retried' }
  })
  t.equal(subscriber.received.length, 3, 'a completed delivery is not sent again')
})

t.test('retrying a delivery that is still being retried is 409, an unknown delivery 404 and a malformed id 400', async (t) => {
  const subscriber = await startSubscriber(() => ({ status: 500 }))
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, {
    ADMIN_TOKEN,
    SUBSCRIBER_CRM_URL: subscriber.url,
    SUBSCRIBER_CRM_EVENTS: '*',
    SUBSCRIBER_CRM_RETRY_SCHEDULE: '300'
  })
  const id = uniqueEventId()
  await postEvent(app, personaEvent(id))
  await waitForJob(app, 'CRM', id, 'delayed')
  t.equal((await admin(app, 'POST', `/admin/deliveries/CRM.${id}/retry`)).statusCode, 409)
  t.equal(await app.delivery.queues.get('CRM')!.getJobState(id), 'delayed', 'left as it was')

  for (const unknown of [`CRM.${uniqueEventId()}`, `NOPE.${id}`]) {
    const { statusCode, body } = await admin(app, 'POST', `/admin/deliveries/${encodeURIComponent(unknown)}/retry`)
    t.equal(statusCode, 404, unknown)
    t.equal(body.code, 'DELIVERY_NOT_FOUND')
  }
  for (const malformed of [`crm.${id}`, id, `CRM.`, `.${id}`, 'CRM..', 'ab']) {
    const { statusCode, body } = await admin(app, 'POST', `/admin/deliveries/${encodeURIComponent(malformed)}/retry`)
    t.equal(statusCode, 400, malformed)
    t.equal(body.code, 'INVALID_REQUEST')
  }
})

t.test('a bulk retry re-queues only the failed deliveries of the given subscriber and failure window', async (t) => {
  let healthy = false
  const subscriber = await startSubscriber(() => ({ status: healthy ? 200 : 500 }))
  t.teardown(() => subscriber.close())
  const { app, logs } = await startRelay(t, {
    ADMIN_TOKEN,
    ...failFast('ALPHA', subscriber.url, 'alpha.*'),
    ...failFast('BETA', subscriber.url, 'beta.*')
  })
  const post = async (subscriber: 'ALPHA' | 'BETA') => {
    const id = uniqueEventId()
    await postEvent(app, personaEvent(id, `${subscriber.toLowerCase()}.happened`))
    await waitForJob(app, subscriber, id, 'failed')
    return id
  }
  const early = { alpha: [await post('ALPHA'), await post('ALPHA')], beta: [await post('BETA')] }
  const previous = Date.now()
  await waitUntil('the clock to move on', () => Date.now() > previous + 2, 1000, 1)
  const middle = new Date().toISOString()
  await waitUntil('the clock to move on', () => Date.now() > Date.parse(middle) + 2, 1000, 1)
  const late = { alpha: [await post('ALPHA'), await post('ALPHA')], beta: [await post('BETA')] }
  healthy = true
  const stateOf = (subscriber: string, id: string) => app.delivery.queues.get(subscriber)!.getJobState(id)

  t.same(await admin(app, 'POST', '/admin/deliveries/retry', { subscriber: 'ALPHA', since: middle }), { statusCode: 202, body: { retried: 2 } })
  await Promise.all(late.alpha.map((id) => waitForDelivery(app, 'ALPHA', id, 'completed')))
  t.same(await Promise.all([...early.alpha.map((id) => stateOf('ALPHA', id)), stateOf('BETA', early.beta[0]!), stateOf('BETA', late.beta[0]!)]),
    ['failed', 'failed', 'failed', 'failed'], 'other subscribers and earlier failures are left alone')
  t.ok(logs.lines.some((line) => line.msg === 'admin: failed deliveries re-queued' && line.subscriber === 'ALPHA' && line.retried === 2))

  t.same(await admin(app, 'POST', '/admin/deliveries/retry', { until: middle }), { statusCode: 202, body: { retried: 3 } })
  await Promise.all([...early.alpha.map((id) => waitForDelivery(app, 'ALPHA', id, 'completed')), waitForDelivery(app, 'BETA', early.beta[0]!, 'completed')])
  t.equal(await stateOf('BETA', late.beta[0]!), 'failed', 'a later failure is outside the window')

  t.same(await admin(app, 'POST', '/admin/deliveries/retry', { since: '2000-01-01T00:00:00Z', until: '2000-01-02T00:00:00Z' }), { statusCode: 202, body: { retried: 0 } })
  t.same(await admin(app, 'POST', '/admin/deliveries/retry'), { statusCode: 202, body: { retried: 1 } }, 'no body: every failed delivery')
  await waitForDelivery(app, 'BETA', late.beta[0]!, 'completed')
  t.same(await admin(app, 'POST', '/admin/deliveries/retry', {}), { statusCode: 202, body: { retried: 0 } }, 'nothing failed is left')
  t.equal(subscriber.received.length, 12, 'six failed attempts and six deliveries')

  t.equal((await admin(app, 'POST', '/admin/deliveries/retry', { subscriber: 'NOPE' })).body.code, 'SUBSCRIBER_NOT_FOUND')
  for (const body of [{ since: 'yesterday' }, { until: '2026-13-01T00:00:00Z' }, { subscriber: 'alpha' }, { other: true }, []]) {
    const answer = await admin(app, 'POST', '/admin/deliveries/retry', body)
    t.equal(answer.statusCode, 400, JSON.stringify(body))
    t.equal(answer.body.code, 'INVALID_REQUEST')
  }
})

t.test('a bulk retry of hundreds of failed deliveries counts each once while /healthz keeps answering, then delivers them', async (t) => {
  const TOTAL = 300
  let healthy = false
  const subscriber = await startSubscriber(() => ({ status: healthy ? 204 : 500 }))
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, { ADMIN_TOKEN, ...failFast('CRM', subscriber.url, '*'), SUBSCRIBER_CRM_CONCURRENCY: '20' })
  for (let index = 0; index < TOTAL; index += 1) await postEvent(app, personaEvent(uniqueEventId()))
  await waitForCount(app, 'CRM', 'failed', TOTAL)

  // While the subscriber still fails, every retried delivery fails again at once: a window that
  // reaches into the future must not catch them a second time.
  const refailing = await withDeadline('the bulk retry', admin(app, 'POST', '/admin/deliveries/retry', { until: '2999-01-01T00:00:00Z' }))
  t.same(refailing, { statusCode: 202, body: { retried: TOTAL } })
  await waitForCount(app, 'CRM', 'failed', TOTAL)

  healthy = true
  let finished = false
  const bulk = admin(app, 'POST', '/admin/deliveries/retry', { subscriber: 'CRM' }).finally(() => {
    finished = true
  })
  const latencies: number[] = []
  const statuses = new Set<number>()
  while (!finished) {
    const started = performance.now()
    const response = await app.inject({ method: 'GET', url: '/healthz' })
    latencies.push(performance.now() - started)
    statuses.add(response.statusCode)
    await new Promise((resolve) => setImmediate(resolve))
  }
  t.same(await bulk, { statusCode: 202, body: { retried: TOTAL } })
  t.same([...statuses], [200])
  t.ok(latencies.length >= 3, `/healthz answered ${latencies.length} times during the bulk retry`)
  t.ok(Math.max(...latencies) < 250, `slowest /healthz took ${Math.round(Math.max(...latencies))} ms`)

  await waitForCount(app, 'CRM', 'completed', TOTAL)
  const delivered = subscriber.received.filter((request) => request.headers['persona-relay-attempt'] === '1').slice(TOTAL * 2)
  t.equal(new Set(delivered.map((request) => request.headers['webhook-id'])).size, TOTAL, 'each delivered once')
  t.equal(subscriber.received.length, TOTAL * 3)
})

t.test('two overlapping bulk retries at once re-queue every failed delivery exactly once between them', async (t) => {
  const TOTAL = 200
  let healthy = false
  const subscriber = await startSubscriber(() => ({ status: healthy ? 204 : 500 }))
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, { ADMIN_TOKEN, ...failFast('CRM', subscriber.url, '*'), SUBSCRIBER_CRM_CONCURRENCY: '20' })
  for (let index = 0; index < TOTAL; index += 1) await postEvent(app, personaEvent(uniqueEventId()))
  await waitForCount(app, 'CRM', 'failed', TOTAL)
  healthy = true

  // One retries everything, the other the middle half of the failures: the first finds part of its
  // batch already taken by the second, and must still go on to everything after it.
  const failedAt = (await app.redis.zrangebyscore(app.delivery.queues.get('CRM')!.keys.failed!, '-inf', '+inf', 'WITHSCORES'))
    .filter((_value, index) => index % 2 === 1).map(Number)
  const middle = { since: new Date(failedAt[TOTAL / 4]!).toISOString(), until: new Date(failedAt[(TOTAL * 3) / 4]!).toISOString() }
  const answers = await withDeadline('two bulk retries', Promise.all([
    admin<{ retried: number }>(app, 'POST', '/admin/deliveries/retry'),
    admin<{ retried: number }>(app, 'POST', '/admin/deliveries/retry', middle)
  ]))
  t.same(answers.map((answer) => answer.statusCode), [202, 202])
  const [everything, part] = answers.map((answer) => answer.body.retried) as [number, number]
  t.equal(everything + part, TOTAL, `${everything} + ${part}`)
  t.ok(part > 0, 'the second took its share')
  await waitForCount(app, 'CRM', 'completed', TOTAL)
  t.equal(subscriber.received.length, TOTAL * 2, 'each failed once and was delivered once')
})
