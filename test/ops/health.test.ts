import t from 'tap'
import type { App } from '../../src/app.js'
import { personaEvent, signedHeaders, startRelay, uniqueEventId } from '../helpers/app.js'
import { startRedis } from '../helpers/redis.js'
import { startSubscriber } from '../helpers/subscriber.js'
import { waitUntil } from '../helpers/wait-until.js'

async function readiness(app: App) {
  const response = await app.inject({ method: 'GET', url: '/readyz' })
  return { statusCode: response.statusCode, body: response.json() as unknown }
}

t.test('/healthz answers 200 ok and stays out of the request log', async (t) => {
  const { app, logs } = await startRelay(t)
  const response = await app.inject({ method: 'GET', url: '/healthz' })
  t.equal(response.statusCode, 200)
  t.same(response.json(), { status: 'ok' })
  t.match(response.headers['content-type'], /^application\/json/)
  t.notOk(logs.lines.some((line) => line.msg === 'request'), 'probes are not logged')
})

t.test('/readyz answers 200 when Redis and delivery are up', async (t) => {
  const { app } = await startRelay(t)
  t.same(await readiness(app), { statusCode: 200, body: { status: 'ready', checks: { redis: 'ok', delivery: 'ok', personaSecret: 'ok' }, pausedSubscribers: [] } })
})

t.test('/readyz answers 503 while Redis is down and ready again once it is back, without a restart', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const { app, logs } = await startRelay(t, { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' }, redis)
  t.equal((await readiness(app)).statusCode, 200)
  await waitUntil('the fan-out to create its consumer group', async () =>
    ((await app.redis.xinfo('GROUPS', app.eventStore.keys.intake(0)).catch(() => [])) as unknown[]).length > 0)

  const printed = t.capture(console, 'error')
  await redis.kill()
  const down = await waitUntil('/readyz to answer 503', async () => {
    const answer = await readiness(app)
    return answer.statusCode === 503 && answer
  })
  t.match(down.body, { status: 'unavailable', checks: { redis: 'failing' } })
  const id = uniqueEventId()
  const body = personaEvent(id)
  const refused = await app.inject({ method: 'POST', url: '/webhooks/persona', headers: signedHeaders(body), payload: body })
  t.equal(refused.statusCode, 503, 'intake refuses what it cannot record')
  await waitUntil('the delivery connection to fail reconnecting', () => logs.lines.some((line) => line.msg === 'delivery worker error'))

  await redis.start()
  const up = await waitUntil('/readyz to answer 200 again', async () => {
    const answer = await readiness(app)
    return answer.statusCode === 200 && answer
  }, 15_000)
  t.same(up.body, { status: 'ready', checks: { redis: 'ok', delivery: 'ok', personaSecret: 'ok' }, pausedSubscribers: [] })
  t.same(printed().map((call) => String(call.args[0])), [], 'the outage went to the log, not raw to stderr')

  // Ready means events flow again: the restarted Redis lost the stream and its consumer group.
  const accepted = await app.inject({ method: 'POST', url: '/webhooks/persona', headers: signedHeaders(body), payload: body })
  t.equal(accepted.statusCode, 200)
  const [request] = await subscriber.waitFor(1, 15_000)
  t.equal(request!.headers['webhook-id'], id)
})

t.test('the placeholder secret from .env.example is warned about at start and shown in /readyz, which stays ready', async (t) => {
  const { app, logs } = await startRelay(t, { PERSONA_WEBHOOK_SECRET: 'wbhsec_replace-me-with-the-secret-from-the-persona-dashboard' })
  t.same(await readiness(app), { statusCode: 200, body: { status: 'ready', checks: { redis: 'ok', delivery: 'ok', personaSecret: 'placeholder' }, pausedSubscribers: [] } })
  const warning = logs.lines.find((line) => line.level === 40 && String(line.msg).includes('placeholder'))
  t.match(warning?.msg, /PERSONA_WEBHOOK_SECRET is still the placeholder/)
  t.notMatch(logs.text(), 'wbhsec_replace-me', 'the secret itself is not logged')
})

t.test('a real secret next to the placeholder still warns: rotation must not keep the stand-in', async (t) => {
  const { app } = await startRelay(t, { PERSONA_WEBHOOK_SECRET: 'wbhsec_real-one,wbhsec_replace-me-with-the-secret-from-the-persona-dashboard' })
  t.match((await readiness(app)).body, { checks: { personaSecret: 'placeholder' } })
})
