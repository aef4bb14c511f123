import t from 'tap'
import { request } from 'undici'
import { personaEvent, signedHeaders, startRelay, uniqueEventId } from '../helpers/app.js'
import { postEvent, waitForDelivery } from '../helpers/delivery.js'
import { freePort } from '../helpers/redis.js'
import { startSubscriber } from '../helpers/subscriber.js'
import { waitUntil } from '../helpers/wait-until.js'
import type { App } from '../../src/app.js'

async function scrape(app: App): Promise<string> {
  const response = await app.inject({ url: '/metrics' })
  t.equal(response.statusCode, 200)
  t.match(response.headers['content-type'], /^text\/plain; version=0\.0\.4/)
  return response.body
}

/** The value of one sample, e.g. `persona_relay_intake_total{outcome="accepted"}`; 0 when absent. */
function sample(text: string, series: string): number {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `))
  return line ? Number(line.slice(series.length + 1)) : 0
}

t.test('intake outcomes and durations are counted from real requests', async (t) => {
  const { app } = await startRelay(t)
  const id = uniqueEventId()
  const body = personaEvent(id)
  await app.inject({ method: 'POST', url: '/webhooks/persona', headers: signedHeaders(body), payload: body })
  await app.inject({ method: 'POST', url: '/webhooks/persona', headers: signedHeaders(body), payload: body })
  await app.inject({ method: 'POST', url: '/webhooks/persona', headers: { ...signedHeaders(body), 'persona-signature': `t=${Math.floor(Date.now() / 1000)},v1=00` }, payload: body })
  await app.inject({ method: 'POST', url: '/webhooks/persona', headers: { 'content-type': 'text/plain' }, payload: 'x' })
  const text = await scrape(app)
  t.equal(sample(text, 'persona_relay_intake_total{outcome="no_subscriber"}'), 1)
  t.equal(sample(text, 'persona_relay_intake_total{outcome="duplicate"}'), 1)
  t.equal(sample(text, 'persona_relay_intake_total{outcome="bad_signature"}'), 1)
  t.equal(sample(text, 'persona_relay_intake_total{outcome="unsupported_media_type"}'), 1)
  t.equal(sample(text, 'persona_relay_intake_duration_seconds_count'), 4)
  t.ok(sample(text, 'process_resident_memory_bytes') > 0, 'default process metrics are included')
})

t.test('delivery attempts, end-to-end latency and queue gauges follow real deliveries', async (t) => {
  const subscriber = await startSubscriber((_request, n) => ({ status: n === 1 ? 500 : 200 }))
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' })
  const id = uniqueEventId()
  await postEvent(app, personaEvent(id))
  await waitForDelivery(app, 'CRM', id, 'completed')
  const text = await scrape(app)
  t.equal(sample(text, 'persona_relay_intake_total{outcome="accepted"}'), 1)
  t.equal(sample(text, 'persona_relay_delivery_attempts_total{subscriber="CRM",outcome="http_error"}'), 1)
  t.equal(sample(text, 'persona_relay_delivery_attempts_total{subscriber="CRM",outcome="success"}'), 1)
  t.equal(sample(text, 'persona_relay_delivery_duration_seconds_count{subscriber="CRM"}'), 2)
  t.equal(sample(text, 'persona_relay_end_to_end_seconds_count{subscriber="CRM"}'), 1)
  t.ok(sample(text, 'persona_relay_end_to_end_seconds_sum{subscriber="CRM"}') >= 0.04, 'end to end includes the retry delay')
  t.equal(sample(text, 'persona_relay_queue_jobs{subscriber="CRM",state="completed"}'), 1)
  t.equal(sample(text, 'persona_relay_queue_jobs{subscriber="CRM",state="failed"}'), 0)
  t.equal(sample(text, 'persona_relay_subscriber_paused{subscriber="CRM"}'), 0)
  t.equal(sample(text, 'persona_relay_oldest_waiting_seconds{subscriber="CRM"}'), 0)

  // The first went through the queue after its first attempt failed; this one is delivered at once
  // and never becomes a job, yet counts the same.
  const second = uniqueEventId()
  await postEvent(app, personaEvent(second))
  await waitForDelivery(app, 'CRM', second, 'completed')
  t.equal(await app.delivery.queues.get('CRM')!.getJob(second), undefined, 'premise: delivered without a job')
  const after = await scrape(app)
  t.equal(sample(after, 'persona_relay_delivery_attempts_total{subscriber="CRM",outcome="success"}'), 2)
  t.equal(sample(after, 'persona_relay_end_to_end_seconds_count{subscriber="CRM"}'), 2)
  t.equal(sample(after, 'persona_relay_queue_jobs{subscriber="CRM",state="completed"}'), 2)
})

t.test('a paused subscriber shows as paused, with its oldest waiting delivery aging', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const { app } = await startRelay(t, { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' })
  await app.delivery.controls.get('CRM')!.pause('manual')
  await postEvent(app, personaEvent(uniqueEventId()))
  await postEvent(app, personaEvent(uniqueEventId()))
  const queue = app.delivery.queues.get('CRM')!
  await waitUntil('two deliveries to wait', async () => (await queue.getJobCounts('wait')).wait === 2)
  const text = await waitUntil('the oldest delivery to be a second old', async () => {
    const scraped = await scrape(app)
    return sample(scraped, 'persona_relay_oldest_waiting_seconds{subscriber="CRM"}') >= 1 && scraped
  }, 5000, 100)
  t.equal(sample(text, 'persona_relay_subscriber_paused{subscriber="CRM"}'), 1)
  t.equal(sample(text, 'persona_relay_queue_jobs{subscriber="CRM",state="wait"}'), 2)
  t.equal(subscriber.received.length, 0)
})

t.test('while Redis is down the scrape still answers, without the queue gauges', async (t) => {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const { app, redis } = await startRelay(t, { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' })
  await redis.kill()
  await waitUntil('the relay to notice', () => app.redis.status !== 'ready')
  const started = Date.now()
  const text = await scrape(app)
  t.ok(Date.now() - started < 2000, 'answered promptly')
  t.notMatch(text, 'persona_relay_queue_jobs{')
  t.match(text, 'persona_relay_intake_total')
  await redis.start()
})

t.test('with METRICS_PORT, /metrics is served only there', async (t) => {
  const metricsPort = await freePort()
  const { app } = await startRelay(t, { METRICS_PORT: String(metricsPort), HOST: '127.0.0.1' })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.equal((await app.inject({ url: '/metrics' })).statusCode, 404)
  const response = await request(`http://127.0.0.1:${metricsPort}/metrics`)
  t.equal(response.statusCode, 200)
  t.match(await response.body.text(), 'persona_relay_intake_total')
})
