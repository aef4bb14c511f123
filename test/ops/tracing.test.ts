import { createServer } from 'node:http'
import { once } from 'node:events'
import t from 'tap'
import { FIXTURE, FIXTURE_ID } from '../helpers/fixtures.js'
import { signedHeaders } from '../helpers/app.js'
import { startRedis } from '../helpers/redis.js'
import { startRelayProcess } from '../helpers/relay-process.js'
import { startSubscriber } from '../helpers/subscriber.js'
import { waitUntil } from '../helpers/wait-until.js'

interface OtlpSpan {
  traceId: string
  spanId: string
  parentSpanId?: string
  name: string
  /** OTLP's SpanKind: 4 producer, 5 consumer. */
  kind?: number
  attributes?: { key: string; value: { stringValue?: string; intValue?: string | number } }[]
  links?: { traceId: string; spanId: string }[]
}

/** An OTLP/HTTP receiver (JSON encoding) on a free port, keeping every span it is sent. */
async function startReceiver() {
  const spans: OtlpSpan[] = []
  const bodies: string[] = []
  const server = createServer(async (request, response) => {
    const chunks: Buffer[] = []
    for await (const chunk of request) chunks.push(chunk as Buffer)
    const text = Buffer.concat(chunks).toString('utf8')
    bodies.push(text)
    if (request.url === '/v1/traces') {
      const payload = JSON.parse(text) as { resourceSpans: { scopeSpans: { spans: OtlpSpan[] }[] }[] }
      for (const resource of payload.resourceSpans) for (const scope of resource.scopeSpans) spans.push(...scope.spans)
    }
    response.writeHead(200, { 'content-type': 'application/json' }).end('{}')
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  return { url: `http://127.0.0.1:${port}`, spans, bodies, close: () => new Promise<void>((resolve) => server.close(() => resolve())) }
}

const attribute = (span: OtlpSpan, key: string) => {
  const value = span.attributes?.find((entry) => entry.key === key)?.value
  return value?.stringValue ?? (value?.intValue !== undefined ? Number(value.intValue) : undefined)
}

t.test('one event delivered after one failed attempt: an intake span and two attempt spans linked to it, and the subscriber joins each attempt\'s trace', async (t) => {
  const receiver = await startReceiver()
  t.teardown(() => receiver.close())
  const subscriber = await startSubscriber((_request, n) => ({ status: n === 1 ? 500 : 200 }))
  t.teardown(() => subscriber.close())
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const relay = await startRelayProcess(t, 'traced', redis, {
    SUBSCRIBER_KYC_URL: subscriber.url,
    SUBSCRIBER_KYC_EVENTS: '*',
    DELIVERY_RETRY_SCHEDULE: '0.2',
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
    OTEL_SERVICE_NAME: 'persona-relay-test',
    OTEL_BSP_SCHEDULE_DELAY: '100'
  })

  // A proxy in front of the relay traces too: its context becomes the intake span's parent.
  const upstream = { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7' }
  const response = await fetch(`${relay.baseUrl}/webhooks/persona`, {
    method: 'POST',
    headers: { ...signedHeaders(FIXTURE), traceparent: `00-${upstream.traceId}-${upstream.spanId}-01` },
    body: FIXTURE
  })
  t.equal(response.status, 200)
  await subscriber.waitFor(2)
  const attempts = await waitUntil('two attempt spans', async () => {
    const found = receiver.spans.filter((span) => span.name === 'persona-relay delivery attempt')
    return found.length >= 2 ? found.sort((a, b) => Number(attribute(a, 'persona_relay.attempt')) - Number(attribute(b, 'persona_relay.attempt'))) : undefined
  }, 15_000)

  const intake = receiver.spans.filter((span) => attribute(span, 'persona.event.id') === FIXTURE_ID && attribute(span, 'persona_relay.intake.outcome') !== undefined)
  t.equal(intake.length, 1, 'one intake span')
  t.match(intake[0], { traceId: upstream.traceId, parentSpanId: upstream.spanId }, 'a child of the traceparent the webhook came with')
  t.equal(attribute(intake[0]!, 'persona.event.name'), 'inquiry.approved')
  t.equal(attribute(intake[0]!, 'persona_relay.intake.outcome'), 'accepted')

  t.equal(attempts.length, 2, 'two attempt spans')
  for (const [index, span] of attempts.entries()) {
    t.equal(attribute(span, 'persona_relay.attempt'), index + 1)
    t.equal(attribute(span, 'persona_relay.subscriber'), 'KYC')
    t.equal(attribute(span, 'persona.event.id'), FIXTURE_ID)
    t.equal(attribute(span, 'http.response.status_code'), index === 0 ? 500 : 200)
    t.same(span.links?.map(({ traceId, spanId }) => ({ traceId, spanId })), [{ traceId: intake[0]!.traceId, spanId: intake[0]!.spanId }], `attempt ${index + 1} links to the intake span`)
    t.not(span.traceId, intake[0]!.traceId, 'in a trace of its own, as a retry hours later would be')
    const traceparent = subscriber.received[index]!.headers.traceparent as string
    const [, traceId, parentId] = traceparent.split('-')
    t.equal(traceId, span.traceId, `the subscriber's request ${index + 1} joins its attempt's trace`)
    const client = await waitUntil('the outbound request span', async () => receiver.spans.find((candidate) => candidate.spanId === parentId))
    t.equal(client.parentSpanId, span.spanId, 'through the request span undici made inside the attempt')
  }
  // The retry is a BullMQ job: bullmq-otel traces its adding and its processing, one trace.
  const job = await waitUntil('the job\'s spans', () => {
    const added = receiver.spans.find((span) => span.kind === 4 && span.name.includes('delivery-KYC'))
    const processed = receiver.spans.find((span) => span.kind === 5 && span.name.includes('delivery-KYC'))
    return added && processed ? { added, processed } : undefined
  }, 15_000)
  t.equal(job.processed.traceId, job.added.traceId, 'the job is processed in the trace it was added in')
  const exported = receiver.bodies.join('\n')
  for (const personal of ['ALEX', 'EXAMPLE', '1990-01-01', 'name-first', 'user_000123']) t.notOk(exported.includes(personal), `no ${personal} in any span`)
})

t.test('with no OTLP endpoint, or OTEL_SDK_DISABLED=true, nothing is traced and no traceparent is sent', async (t) => {
  const receiver = await startReceiver()
  t.teardown(() => receiver.close())
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const relay = await startRelayProcess(t, 'untraced', redis, {
    SUBSCRIBER_KYC_URL: subscriber.url,
    SUBSCRIBER_KYC_EVENTS: '*',
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_SDK_DISABLED: 'true',
    OTEL_BSP_SCHEDULE_DELAY: '100'
  })
  const response = await fetch(`${relay.baseUrl}/webhooks/persona`, { method: 'POST', headers: signedHeaders(FIXTURE), body: FIXTURE })
  t.equal(response.status, 200)
  await subscriber.waitFor(1)
  await new Promise((resolve) => setTimeout(resolve, 500))
  t.equal(subscriber.received[0]!.headers.traceparent, undefined)
  t.equal(receiver.bodies.length, 0, 'the receiver heard nothing')
})
