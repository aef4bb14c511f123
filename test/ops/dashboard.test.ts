import t from 'tap'
import { Redis } from 'ioredis'
import { Errors } from '../../src/errors.js'
import { DASHBOARD_PATH } from '../../src/ops/dashboard.js'
import { ADMIN_TOKEN, basic } from '../helpers/admin.js'
import { signedHeaders, startRelay } from '../helpers/app.js'
import { deliveryView, waitForDelivery, waitForJob } from '../helpers/delivery.js'
import { FIXTURE, FIXTURE_ID } from '../helpers/fixtures.js'
import { startSubscriber } from '../helpers/subscriber.js'

/** Values only the Persona body holds: personal data, and the id of the inquiry it is about. */
const PERSONAL = ['alex@example.test', '1990-01-01', 'inq_Fh3kP9wQz2LmN8xRt5VbC1sY', 'name-first']

t.test('with ADMIN_TOKEN', async (t) => {
  let succeed = false
  const subscriber = await startSubscriber(() => (succeed ? { status: 204 } : { status: 500, body: 'down for maintenance' }))
  t.teardown(() => subscriber.close())
  const relay = await startRelay(t, {
    ADMIN_TOKEN,
    SUBSCRIBER_CRM_URL: subscriber.url,
    SUBSCRIBER_CRM_EVENTS: 'inquiry.*',
    SUBSCRIBER_CRM_MAX_ATTEMPTS: '1',
    SUBSCRIBER_BILLING_URL: subscriber.url,
    SUBSCRIBER_BILLING_EVENTS: 'transaction.*'
  })
  const { app } = relay
  const get = (url: string, authorization?: string) =>
    app.inject({ method: 'GET', url, headers: authorization ? { authorization } : {} })

  // A failed delivery keeps its body in Redis for a retry: the dashboard must still not show it.
  const intake = await app.inject({ method: 'POST', url: '/webhooks/persona', headers: signedHeaders(FIXTURE), payload: FIXTURE })
  t.equal(intake.statusCode, 200)
  await waitForJob(app, 'CRM', FIXTURE_ID, 'failed')
  const redis = new Redis(relay.redis.url)
  t.teardown(() => redis.disconnect())
  const stored = await redis.get(`persona-relay:body:${FIXTURE_ID}`)
  t.match(stored, PERSONAL[0], 'premise: the body with its personal data is still in Redis')

  t.test('without credentials: 401 with a Basic challenge, for the page and everything under it', async (t) => {
    for (const url of [DASHBOARD_PATH, `${DASHBOARD_PATH}/`, `${DASHBOARD_PATH}/api/queues`, `${DASHBOARD_PATH}/queue/delivery-CRM`,
      `${DASHBOARD_PATH}/static/js/main.js`, `${DASHBOARD_PATH}/no/such/page`]) {
      const response = await get(url)
      t.equal(response.statusCode, 401, url)
      t.match(response.headers['www-authenticate'], /^Basic realm="persona-relay"/, `${url} asks for Basic credentials`)
      t.match(response.json(), { code: 'ADMIN_UNAUTHORIZED' })
    }
  })

  t.test('wrong credentials: 401', async (t) => {
    for (const authorization of [basic('admin', 'not-the-admin-token'), basic('admin', ''), 'Bearer not-the-admin-token-at-all']) {
      const response = await get(DASHBOARD_PATH, authorization)
      t.equal(response.statusCode, 401, authorization)
      t.match(response.headers['www-authenticate'], /^Basic /)
    }
  })

  t.test('Basic with the token as password, or Bearer: the HTML page and its assets', async (t) => {
    for (const authorization of [basic('admin', ADMIN_TOKEN), basic('ops', ADMIN_TOKEN), `Bearer ${ADMIN_TOKEN}`]) {
      const response = await get(DASHBOARD_PATH, authorization)
      t.equal(response.statusCode, 200, authorization)
      t.match(response.headers['content-type'], /^text\/html/)
      t.match(response.body, /<html/i)
      t.equal(response.headers['www-authenticate'], undefined)
    }
    const page = (await get(DASHBOARD_PATH, `Bearer ${ADMIN_TOKEN}`)).body
    const script = /src="([^"]+\.js)"/.exec(page)?.[1]
    t.ok(script, 'the page loads a script')
    const asset = await get(script!.startsWith('/') ? script! : `${DASHBOARD_PATH}/${script}`, basic('admin', ADMIN_TOKEN))
    t.equal(asset.statusCode, 200, 'which is served with the same credentials')
    t.equal((await get(script!.startsWith('/') ? script! : `${DASHBOARD_PATH}/${script}`)).statusCode, 401, 'and only with them')
  })

  t.test('the API lists one queue per subscriber and never the event body', async (t) => {
    const auth = basic('admin', ADMIN_TOKEN)
    const list = await get(`${DASHBOARD_PATH}/api/queues?activeQueue=delivery-CRM&status=failed&page=1`, auth)
    t.equal(list.statusCode, 200)
    const { queues } = list.json<{ queues: { name: string; counts: Record<string, number>; jobs: { id: string; name: string; data: Record<string, unknown> }[] }[] }>()
    t.same(queues.map((queue) => queue.name).sort(), ['delivery-BILLING', 'delivery-CRM'])
    const crm = queues.find((queue) => queue.name === 'delivery-CRM')!
    t.equal(crm.counts.failed, 1)
    t.equal(crm.jobs.length, 1, 'the failed delivery is listed')
    t.match(crm.jobs[0], { id: FIXTURE_ID, name: 'inquiry.approved', data: { eventId: FIXTURE_ID, eventName: 'inquiry.approved' } })

    const job = await get(`${DASHBOARD_PATH}/api/queues/delivery-CRM/${FIXTURE_ID}`, auth)
    t.equal(job.statusCode, 200)
    t.match(job.json(), { status: 'failed', job: { id: FIXTURE_ID, data: { eventId: FIXTURE_ID } } })
    const logs = await get(`${DASHBOARD_PATH}/api/queues/delivery-CRM/${FIXTURE_ID}/logs`, auth)
    t.equal(logs.statusCode, 200)
    t.match(logs.body, /"outcome\\?":\\?"http_error\\?"/, 'the attempt history is there')
    const latest = await get(`${DASHBOARD_PATH}/api/queues?activeQueue=delivery-CRM&status=latest`, auth)

    t.equal(latest.statusCode, 200)
    for (const [what, response] of Object.entries({ list, job, logs, latest })) {
      for (const value of PERSONAL) t.notMatch(response.body, value, `${value} is not in the ${what} answer`)
    }
  })

  t.test('actions that would leave a delivery without its body are refused', async (t) => {
    const auth = { authorization: basic('admin', ADMIN_TOKEN), 'content-type': 'application/json' }
    const api = `${DASHBOARD_PATH}/api/queues/delivery-CRM`
    const data = await redis.hget(`persona-relay:delivery-CRM:${FIXTURE_ID}`, 'data')
    const refused = [
      { what: 'editing the data of a failed delivery', method: 'PATCH' as const, url: `${api}/${FIXTURE_ID}/update-data`, payload: { eventId: FIXTURE_ID }, code: 'NOT_FOUND' },
      { what: 'the same with an encoded path', method: 'PATCH' as const, url: `${api}/${FIXTURE_ID}/update-d%61ta`, payload: { eventId: FIXTURE_ID }, code: 'NOT_FOUND' },
      { what: 'adding a delivery by hand', method: 'POST' as const, url: `${api}/add`, payload: { name: 'inquiry.approved', data: { eventId: 'evt_x' } }, code: 'NOT_FOUND' },
      { what: 'retrying every completed delivery', method: 'PUT' as const, url: `${api}/retry/completed`, payload: {}, code: 'DELIVERY_NOT_FAILED' }
    ]
    for (const { what, method, url, payload, code } of refused) {
      const response = await app.inject({ method, url, headers: auth, payload })
      t.equal(response.statusCode, code === 'NOT_FOUND' ? 404 : 409, what)
      t.match(response.json(), { code }, what)
    }
    t.equal(await redis.get(`persona-relay:body:${FIXTURE_ID}`), stored, 'the failed delivery still has its body')
    t.match(JSON.parse(data!), { eventId: FIXTURE_ID, eventName: 'inquiry.approved' }, 'premise: the delivery has its data')
    t.equal(await redis.hget(`persona-relay:delivery-CRM:${FIXTURE_ID}`, 'data'), data, 'nor was its data edited')
    t.equal(await app.delivery.queues.get('CRM')!.count(), 0, 'nothing was added')
  })

  t.test('actions that delete deliveries are refused and nothing is lost', async (t) => {
    const auth = { authorization: basic('admin', ADMIN_TOKEN), 'content-type': 'application/json' }
    const api = `${DASHBOARD_PATH}/api/queues/delivery-CRM`
    const queue = app.delivery.queues.get('CRM')!
    const before = await queue.getJobCounts('failed', 'completed')
    t.equal(before.failed, 1, 'premise: the failed delivery is in its queue')
    const refused = [
      { what: 'removing one delivery', url: `${api}/${FIXTURE_ID}/clean` },
      { what: 'the same with an encoded path', url: `${api}/${FIXTURE_ID}/cle%61n` },
      { what: 'cleaning failed deliveries', url: `${api}/clean/failed` },
      { what: 'cleaning completed deliveries', url: `${api}/clean/completed` },
      { what: 'emptying the queue', url: `${api}/empty` },
      { what: 'obliterating the queue', url: `${api}/obliterate`, payload: { force: true } },
      { what: 'removing unprocessed children', url: `${api}/${FIXTURE_ID}/remove-unprocessed-children` }
    ]
    for (const { what, url, payload } of refused) {
      const response = await app.inject({ method: 'PUT', url, headers: auth, payload: payload ?? {} })
      t.equal(response.statusCode, 409, what)
      t.same(response.json(), {
        statusCode: 409,
        code: 'DASHBOARD_ACTION_DISABLED',
        error: 'Conflict',
        message: new Errors.DASHBOARD_ACTION_DISABLED().message
      }, what)
    }
    t.same(await queue.getJobCounts('failed', 'completed'), before, 'every delivery is still in its queue')
    t.equal(await queue.getJobState(FIXTURE_ID), 'failed', 'the failed delivery is still failed')
    t.equal(await redis.get(`persona-relay:body:${FIXTURE_ID}`), stored, 'and still has its body')
  })

  t.test('every dashboard answer forbids framing, whatever its status', async (t) => {
    const bearer = `Bearer ${ADMIN_TOKEN}`
    const page = (await get(DASHBOARD_PATH, bearer)).body
    const script = /src="([^"]+\.js)"/.exec(page)![1]!
    const asset = script.startsWith('/') ? script : `${DASHBOARD_PATH}/${script}`
    const answers = {
      'the page': await get(DASHBOARD_PATH, bearer),
      'a queue page': await get(`${DASHBOARD_PATH}/queue/delivery-CRM`, bearer),
      'an asset': await get(asset, bearer),
      'the API': await get(`${DASHBOARD_PATH}/api/queues`, bearer),
      'a 401': await get(DASHBOARD_PATH),
      'a 401 for an asset': await get(asset),
      'a refused action': await app.inject({ method: 'PUT', url: `${DASHBOARD_PATH}/api/queues/delivery-CRM/empty`, headers: { authorization: bearer } }),
      "bull-board's own 404": await get(`${DASHBOARD_PATH}/api/queues/delivery-CRM/evt_unknown`, bearer),
      'an unknown path': await get(`${DASHBOARD_PATH}/no/such/page/here`, bearer)
    }
    for (const [what, response] of Object.entries(answers)) {
      t.equal(response.headers['x-frame-options'], 'DENY', `${what} (${response.statusCode}) sends X-Frame-Options`)
      t.equal(response.headers['content-security-policy'], "frame-ancestors 'none'", `${what} (${response.statusCode}) sends frame-ancestors`)
    }
  })

  t.test('a failed delivery can be retried from the board, and once completed it cannot', async (t) => {
    const api = `${DASHBOARD_PATH}/api/queues/delivery-CRM`
    const auth = { authorization: `Bearer ${ADMIN_TOKEN}` }
    succeed = true
    const retry = await app.inject({ method: 'PUT', url: `${api}/${FIXTURE_ID}/retry`, headers: auth })
    t.equal(retry.statusCode, 204)
    await waitForDelivery(app, 'CRM', FIXTURE_ID, 'completed')
    t.equal(subscriber.received.length, 2, 'delivered on the retry')

    const again = await app.inject({ method: 'PUT', url: `${api}/${FIXTURE_ID}/retry`, headers: auth })
    t.equal(again.statusCode, 409)
    t.match(again.json(), { code: 'DELIVERY_NOT_FAILED' })
    t.equal((await deliveryView(app, 'CRM', FIXTURE_ID))?.state, 'completed', 'still completed, not turned into a failure')
    t.equal((await app.inject({ method: 'PUT', url: `${api}/evt_unknown/retry`, headers: auth })).statusCode, 404, 'an unknown delivery is bull-board\'s 404')
  })

  t.test('the board does not offer to retry completed deliveries', async (t) => {
    const list = await get(`${DASHBOARD_PATH}/api/queues`, `Bearer ${ADMIN_TOKEN}`)
    for (const queue of list.json<{ queues: { allowRetries: boolean; allowCompletedRetries: boolean }[] }>().queues) {
      t.match(queue, { allowRetries: true, allowCompletedRetries: false })
    }
  })
})

t.test('without ADMIN_TOKEN there is no dashboard', async (t) => {
  const relay = await startRelay(t, { SUBSCRIBER_CRM_URL: 'http://127.0.0.1:9/hook', SUBSCRIBER_CRM_EVENTS: '*' })
  for (const url of [DASHBOARD_PATH, `${DASHBOARD_PATH}/api/queues`]) {
    for (const authorization of [undefined, `Bearer ${ADMIN_TOKEN}`]) {
      const response = await relay.app.inject({ method: 'GET', url, headers: authorization ? { authorization } : {} })
      t.equal(response.statusCode, 404, `${url} ${authorization ?? 'without credentials'}`)
      t.match(response.json(), { code: 'NOT_FOUND' })
      t.equal(response.headers['www-authenticate'], undefined)
    }
  }
})
