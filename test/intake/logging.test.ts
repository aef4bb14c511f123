import { readFileSync } from 'node:fs'
import t from 'tap'
import { personaEvent, SECRET, signedHeaders, startRelay, uniqueEventId, type LogCapture } from '../helpers/app.js'
import { startSubscriber } from '../helpers/subscriber.js'
import { waitUntil } from '../helpers/wait-until.js'

const PATH = '/webhooks/persona'

interface PersonalEvent {
  body: string
  id: string
  /** Values from the body that identify a person; none may reach a log line. */
  personal: string[]
}

/** inquiry.approved.json with a street address added, so that every kind of personal field is present. */
function personalEvent(id: string): PersonalEvent {
  const event = JSON.parse(readFileSync(new URL('../fixtures/inquiry.approved.json', import.meta.url), 'utf8'))
  event.data.id = id
  const fields = event.data.attributes.payload.data.attributes.fields
  fields['address-street-1'] = { type: 'string', value: '742 Evergreen Terrace' }
  fields['address-postal-code'] = { type: 'string', value: '49007' }
  const personal = [
    fields['name-first'].value,
    fields['name-last'].value,
    fields.birthdate.value,
    fields['email-address'].value,
    fields['address-street-1'].value,
    fields['address-postal-code'].value
  ]
  return { body: JSON.stringify(event, null, 2), id, personal }
}

function attemptHeaders(made: number, left: number, firstAttemptedAt: number) {
  return {
    'persona-webhook-attempts-made': String(made),
    'persona-webhook-attempts-left': String(left),
    'persona-webhook-first-attempted-at': String(firstAttemptedAt)
  }
}

function intakeLines(logs: LogCapture) {
  return logs.lines.filter((line) => line.msg === 'intake')
}

for (const level of ['info', 'trace']) {
  t.test(`at LOG_LEVEL=${level} every intake request logs one line and no secret or personal data`, async (t) => {
    const subscriber = await startSubscriber()
    t.teardown(() => subscriber.close())
    const { app, logs } = await startRelay(t, {
      LOG_LEVEL: level,
      BODY_LIMIT_BYTES: '8192',
      SUBSCRIBER_CRM_URL: subscriber.url,
      SUBSCRIBER_CRM_EVENTS: 'inquiry.*'
    })
    const event = personalEvent(uniqueEventId())
    t.same(event.personal.slice(0, 4), ['ALEX', 'EXAMPLE', '1990-01-01', 'alex@example.test'], 'the fixture carries personal data')
    t.ok(Buffer.byteLength(event.body) < 8192, 'the event fits under BODY_LIMIT_BYTES')
    const firstAttemptedAt = Math.floor(Date.now() / 1000) - 60
    const sentSignatures: string[] = []
    const other = uniqueEventId()
    const otherBody = personaEvent(other, 'account.created')

    const notEnvelope = JSON.stringify({ data: { type: 'inquiry', attributes: JSON.parse(event.body).data.attributes } })
    const truncated = event.body.slice(0, -10)
    const requests: { what: string; payload: string; headers: Record<string, string>; expected: Record<string, unknown> }[] = [
      {
        what: 'accepted',
        payload: event.body,
        headers: signedHeaders(event.body),
        expected: { eventId: event.id, eventName: 'inquiry.approved', outcome: 'accepted', statusCode: 200 }
      },
      {
        what: 'duplicate',
        payload: event.body,
        headers: signedHeaders(event.body),
        expected: { eventId: event.id, eventName: 'inquiry.approved', outcome: 'duplicate', statusCode: 200 }
      },
      {
        what: 'no subscriber',
        payload: otherBody,
        headers: signedHeaders(otherBody),
        expected: { eventId: other, eventName: 'account.created', outcome: 'no_subscriber', statusCode: 200 }
      },
      {
        what: 'bad signature',
        payload: event.body,
        headers: signedHeaders(event.body, { secrets: ['wbhsec_wrong'] }),
        expected: { outcome: 'bad_signature', statusCode: 401 }
      },
      {
        what: 'missing signature',
        payload: event.body,
        headers: { 'content-type': 'application/json' },
        expected: { outcome: 'bad_signature', statusCode: 401 }
      },
      {
        what: 'stale signature',
        payload: event.body,
        headers: signedHeaders(event.body, { timestamp: firstAttemptedAt - 3600 }),
        expected: { outcome: 'stale_timestamp', statusCode: 401 }
      },
      {
        what: 'signed but not an envelope',
        payload: notEnvelope,
        headers: signedHeaders(notEnvelope),
        expected: { outcome: 'malformed', statusCode: 422 }
      },
      {
        what: 'signed but not JSON',
        payload: truncated,
        headers: signedHeaders(truncated),
        expected: { outcome: 'malformed', statusCode: 400 }
      },
      {
        what: 'too large',
        payload: event.body.padEnd(9000, ' '),
        headers: signedHeaders(event.body.padEnd(9000, ' ')),
        expected: { outcome: 'too_large', statusCode: 413 }
      },
      {
        what: 'not JSON at all',
        payload: event.body,
        headers: { ...signedHeaders(event.body), 'content-type': 'text/plain' },
        expected: { outcome: 'unsupported_media_type', statusCode: 415 }
      }
    ]

    // Sent as if attempts of one delivery: made n, the rest left, the first a minute ago.
    for (const [index, request] of requests.entries()) {
      const signature = request.headers['persona-signature']
      if (signature) sentSignatures.push(signature)
      const response = await app.inject({
        method: 'POST',
        url: PATH,
        headers: { ...request.headers, ...attemptHeaders(index + 1, requests.length - index - 1, firstAttemptedAt) },
        payload: request.payload
      })
      t.equal(response.statusCode, request.expected.statusCode, `${request.what}: answered ${request.expected.statusCode}`)
    }
    const lines = await waitUntil('an intake line per request', () => {
      const found = intakeLines(logs)
      return found.length >= requests.length && found
    })
    t.equal(lines.length, requests.length, 'exactly one intake line per request')
    t.equal(new Set(lines.map((line) => line.reqId)).size, requests.length, 'each from its own request')
    requests.forEach((request, index) => {
      const line = lines[index]!
      t.match(line, request.expected, `${request.what}: ${JSON.stringify(request.expected)}`)
      t.equal(line.level, 30, `${request.what}: logged at info`)
      t.same(
        [line.personaAttemptsMade, line.personaAttemptsLeft, line.personaFirstAttemptedAt],
        [String(index + 1), String(requests.length - index - 1), String(firstAttemptedAt)],
        `${request.what}: Persona's attempt headers`
      )
      t.type(line.durationMs, 'number')
      if (!('eventId' in request.expected)) t.notOk('eventId' in line, `${request.what}: no unverified event id`)
    })

    // The delivery's own line is part of the text checked below.
    await subscriber.waitFor(1)
    await waitUntil('the delivery attempt line', () => logs.lines.some((line) => line.msg === 'delivery attempt'))

    const text = logs.text()
    t.notOk(text.includes(SECRET), 'the secret is never logged')
    t.notOk(text.includes(SECRET.slice('wbhsec_'.length)), 'nor its body')
    for (const signature of sentSignatures) {
      t.notOk(text.includes(signature), 'no Persona-Signature value is logged')
      t.notOk(text.includes(signature.split('v1=')[1]!), 'nor its v1 digest')
    }
    for (const value of event.personal) t.notOk(text.includes(value), `the personal value ${JSON.stringify(value)} is never logged`)
    t.notOk(text.includes('inq_Fh3kP9wQz2LmN8xRt5VbC1sY'), 'nothing of the payload is logged')
  })
}

t.test('health probes produce no log lines', async (t) => {
  const { app, logs } = await startRelay(t)
  const before = logs.lines.length
  for (const url of ['/healthz', '/readyz', '/healthz?verbose=1']) {
    const response = await app.inject({ method: 'GET', url })
    t.equal(response.statusCode, 200, `${url} answers`)
  }
  // A request that does log, sent after the probes: once its line is there, theirs would be too.
  const id = uniqueEventId()
  const body = personaEvent(id)
  await app.inject({ method: 'POST', url: PATH, headers: signedHeaders(body), payload: body })
  await waitUntil('the intake line', () => intakeLines(logs).some((line) => line.eventId === id))
  const added = logs.lines.slice(before)
  t.same(added.map((line) => line.msg), ['intake'], 'only the webhook logged')
  t.notOk(logs.text().includes('healthz'), 'no line mentions /healthz')
  t.notOk(logs.text().includes('readyz'), 'no line mentions /readyz')
})

t.test('requests outside the webhook log one request line', async (t) => {
  const { app, logs } = await startRelay(t)
  const response = await app.inject({ method: 'GET', url: '/nowhere' })
  t.equal(response.statusCode, 404)
  const [line] = await waitUntil('the request line', () => {
    const found = logs.lines.filter((entry) => entry.msg === 'request')
    return found.length > 0 && found
  })
  t.match(line, { method: 'GET', url: '/nowhere', statusCode: 404 })
})
