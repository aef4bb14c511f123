import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { main } from '../../src/cli/main.js'
import type { Output } from '../../src/cli/args.js'
import { computeSignature, parseSignatureHeader } from '../../src/persona/signature.js'
import { SECRET, startRelay } from '../helpers/app.js'
import { freePort } from '../helpers/redis.js'
import { LOADER_ARGS, ROOT } from '../helpers/relay-process.js'
import { startSubscriber, type TestSubscriber } from '../helpers/subscriber.js'
import { waitUntil } from '../helpers/wait-until.js'
import { FIXTURE_PATH as FIXTURE, FIXTURE_ID, VECTORS } from '../helpers/fixtures.js'

const OTHER_SECRET = 'wbhsec_99999999-8888-7777-6666-555555555555'
const USAGE_HEAD = 'persona-relay <command>'
const EVENT_ID = /^evt_[A-Za-z0-9]{24}$/

interface Run {
  code: number | undefined
  out: string[]
  err: string[]
  /** Every line the command printed, stdout then stderr. */
  text: string
}

async function run(argv: string[], env: NodeJS.ProcessEnv = {}, stdin?: () => Promise<Buffer>): Promise<Run> {
  const out: string[] = []
  const err: string[] = []
  const output: Output = { out: (line) => out.push(line), err: (line) => err.push(line) }
  const code = await main(argv, env, output, stdin ?? (() => Promise.reject(new Error('stdin was not expected to be read'))))
  return { code, out, err, text: [...out, ...err].join('\n') }
}

/** `200 {"received":true,...}` lines as status and parsed answer. */
function answers(lines: string[]) {
  return lines.map((line) => {
    const [status, ...rest] = line.split(' ')
    return { status: Number(status), body: JSON.parse(rest.join(' ')) as { received?: boolean; id?: string; duplicate?: boolean; code?: string } }
  })
}

interface Setup {
  url: string
  subscriber: TestSubscriber
}

/** A relay listening on a real port (it takes only SECRET) with one subscriber for every event. */
async function relayWithSubscriber(t: Test): Promise<Setup> {
  const subscriber = await startSubscriber()
  t.teardown(() => subscriber.close())
  const relay = await startRelay(t, { SUBSCRIBER_CRM_URL: subscriber.url, SUBSCRIBER_CRM_EVENTS: '*' })
  await relay.app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = relay.app.server.address() as { port: number }
  return { url: `http://127.0.0.1:${port}${relay.config.persona.path}`, subscriber }
}

t.test('send', async (t) => {
  const { url, subscriber } = await relayWithSubscriber(t)
  const deliveredIds = () => subscriber.received.map((request) => String(request.headers['webhook-id']))

  t.test('posts a signed event the relay accepts and the subscriber receives', async (t) => {
    const before = subscriber.received.length
    const result = await run(['send', 'inquiry.approved', '--url', url, '--secret', SECRET])
    t.equal(result.code, 0, result.text)
    t.same(result.err, [])
    const [answer] = answers(result.out)
    t.equal(answer!.status, 200)
    t.match(answer!.body, { received: true, id: EVENT_ID })
    t.equal(answer!.body.duplicate, undefined)
    const [delivery] = (await subscriber.waitFor(before + 1)).slice(before)
    t.equal(delivery!.headers['webhook-id'], answer!.body.id)
    t.equal(delivery!.headers['persona-event-name'], 'inquiry.approved')
    const body = JSON.parse(delivery!.body.toString()) as { data: { id: string; type: string; attributes: { name: string; payload: { data: { type: string; id: string } } } } }
    t.equal(body.data.id, answer!.body.id)
    t.equal(body.data.type, 'event')
    t.equal(body.data.attributes.name, 'inquiry.approved')
    t.match(body.data.attributes.payload.data, { type: 'inquiry', id: /^inq_/ })
  })

  t.test('--count 3 sends three distinct events, all delivered', async (t) => {
    const before = subscriber.received.length
    const result = await run(['send', 'report/watchlist.matched', '--url', url, '--secret', SECRET, '--count', '3'])
    t.equal(result.code, 0, result.text)
    const sent = answers(result.out)
    t.same(sent.map((answer) => answer.status), [200, 200, 200])
    const ids = sent.map((answer) => answer.body.id)
    t.equal(new Set(ids).size, 3, 'three different event ids')
    for (const answer of sent) t.equal(answer.body.duplicate, undefined, 'none is a duplicate')
    await subscriber.waitFor(before + 3)
    t.same(deliveredIds().slice(before).sort(), [...ids].sort())
    for (const delivery of subscriber.received.slice(before)) t.equal(delivery.headers['persona-event-name'], 'report/watchlist.matched')
  })

  t.test('--duplicate sends each event twice and the second copy is answered as a duplicate', async (t) => {
    const result = await run(['send', 'verification.passed', '--url', url, '--secret', SECRET, '--duplicate', '--count', '2'])
    t.equal(result.code, 0, result.text)
    const sent = answers(result.out)
    t.equal(sent.length, 4)
    for (const index of [0, 2]) {
      const [first, second] = [sent[index]!, sent[index + 1]!]
      t.same(first.body, { received: true, id: first.body.id })
      t.same(second.body, { received: true, id: first.body.id, duplicate: true })
    }
    t.not(sent[0]!.body.id, sent[2]!.body.id)
    const ids = [sent[0]!.body.id!, sent[2]!.body.id!]
    await waitUntil('both events delivered', () => ids.every((id) => deliveredIds().includes(id)))
    t.equal(deliveredIds().filter((id) => ids.includes(id)).length, 2, 'each delivered once')
  })

  t.test('a file is sent byte for byte, and later copies of --count get fresh event ids', async (t) => {
    const file = readFileSync(FIXTURE)
    const before = subscriber.received.length
    const result = await run(['send', FIXTURE, '--url', url, '--secret', SECRET, '--count', '2'])
    t.equal(result.code, 0, result.text)
    const [first, second] = answers(result.out)
    t.same(first, { status: 200, body: { received: true, id: FIXTURE_ID } })
    t.equal(second!.status, 200)
    t.match(second!.body.id, EVENT_ID)
    t.not(second!.body.id, FIXTURE_ID)
    t.equal(second!.body.duplicate, undefined)

    const deliveries = (await subscriber.waitFor(before + 2)).slice(before)
    const original = deliveries.find((delivery) => delivery.headers['webhook-id'] === FIXTURE_ID)!
    t.ok(original.body.equals(file), 'the subscriber got exactly the file')
    const copy = deliveries.find((delivery) => delivery.headers['webhook-id'] === second!.body.id)!
    t.equal(copy.body.toString(), file.toString().replace(FIXTURE_ID, second!.body.id!), 'the copy differs only by its id')
  })

  t.test('a file that is not JSON is sent once as is, but cannot be copied with --count', async (t) => {
    const dir = t.testdir({ 'broken.json': '{"data": ' })
    const single = await run(['send', join(dir, 'broken.json'), '--url', url, '--secret', SECRET])
    t.equal(single.code, 1, 'sent, and refused by the relay')
    t.match(single.out[0], /^400 .*INVALID_JSON/)
    const before = subscriber.received.length
    const copies = await run(['send', join(dir, 'broken.json'), '--url', url, '--secret', SECRET, '--count', '2'])
    t.equal(copies.code, 2)
    t.match(copies.err[0], 'the file is not JSON, so --count cannot give its copies fresh ids')
    t.same(copies.out, [], 'nothing was sent')
    t.equal(subscriber.received.length, before)
  })

  t.test('a file is never re-encoded: bytes that are not UTF-8 reach the wire unchanged', async (t) => {
    const capture = await startSubscriber()
    t.teardown(() => capture.close())
    const latin1 = Buffer.concat([Buffer.from('{"data":{"type":"event","id":"evt_latin1","attributes":{"name":"x.y","city":"'), Buffer.from([0xe9]), Buffer.from('"}}}')])
    const dir = t.testdir({ 'latin1.json': latin1 })
    const result = await run(['send', join(dir, 'latin1.json'), '--url', capture.url, '--secret', SECRET])
    t.equal(result.code, 0, result.text)
    const [request] = await capture.waitFor(1)
    t.ok(request!.body.equals(latin1), 'the same bytes')
    const [group] = parseSignatureHeader(request!.headers['persona-signature'] as string)!
    t.equal(group!.signatures[0], computeSignature(SECRET, group!.timestamp, latin1), 'signed over those bytes')
  })

  t.test('an id written with JSON escapes cannot be replaced, and --count says so before sending anything', async (t) => {
    const dir = t.testdir({ 'escaped.json': '{"data":{"type":"event","id":"evt_\\u0041bc","attributes":{"name":"x.y"}}}', 'no-id.json': '{"data":{}}' })
    const before = subscriber.received.length
    const escaped = await run(['send', join(dir, 'escaped.json'), '--url', url, '--secret', SECRET, '--count', '2'])
    t.equal(escaped.code, 2)
    t.match(escaped.err[0], "the file's data.id is written with escapes")
    const noId = await run(['send', join(dir, 'no-id.json'), '--url', url, '--secret', SECRET, '--count', '2'])
    t.equal(noId.code, 2)
    t.match(noId.err[0], 'the file has no data.id to replace')
    t.same([...escaped.out, ...noId.out], [], 'nothing was sent')
    t.equal(subscriber.received.length, before)
  })

  t.test('the secret comes from PERSONA_WEBHOOK_SECRET when --secret is absent', async (t) => {
    const result = await run(['send', 'inquiry.declined', '--url', url], { PERSONA_WEBHOOK_SECRET: SECRET })
    t.equal(result.code, 0, result.text)
    t.equal(answers(result.out)[0]!.status, 200)
    await waitUntil('the accepted event to be delivered', () => deliveredIds().includes(answers(result.out)[0]!.body.id!))
    const wrong = await run(['send', 'inquiry.declined', '--url', url], { PERSONA_WEBHOOK_SECRET: OTHER_SECRET })
    t.equal(wrong.code, 1, 'and it is really used')
    const flag = await run(['send', 'inquiry.declined', '--url', url, '--secret', SECRET], { PERSONA_WEBHOOK_SECRET: OTHER_SECRET })
    t.equal(flag.code, 0, '--secret wins over the environment')
    await waitUntil('the accepted event to be delivered', () => deliveredIds().includes(answers(flag.out)[0]!.body.id!))
  })

  t.test('comma-separated secrets sign one group each, as during a rotation, and the relay accepts it', async (t) => {
    const result = await run(['send', 'inquiry.approved', '--url', url, '--secret', `${OTHER_SECRET},${SECRET}`])
    t.equal(result.code, 0, result.text)
    t.equal(answers(result.out)[0]!.status, 200, 'accepted although the relay knows only the second secret')

    const capture = await startSubscriber()
    t.teardown(() => capture.close())
    await run(['send', 'inquiry.approved', '--url', capture.url, '--secret', ` ${OTHER_SECRET} , ${SECRET} `])
    await waitUntil('the accepted event to be delivered', () => deliveredIds().includes(answers(result.out)[0]!.body.id!))
    const [request] = await capture.waitFor(1)
    const header = request!.headers['persona-signature'] as string
    t.match(header, /^t=\d+,v1=[0-9a-f]{64} t=\d+,v1=[0-9a-f]{64}$/)
    const groups = parseSignatureHeader(header)!
    t.equal(groups[0]!.timestamp, groups[1]!.timestamp)
    t.ok(Math.abs(groups[0]!.timestamp - Date.now() / 1000) < 5, 't is now')
    t.same(groups.map((group) => group.signatures[0]), [
      computeSignature(OTHER_SECRET, groups[0]!.timestamp, request!.body),
      computeSignature(SECRET, groups[0]!.timestamp, request!.body)
    ], 'in the order given, each under its own secret')
    t.match(request!.headers, {
      'content-type': 'application/json; charset=utf-8',
      'persona-webhook-attempts-made': '1',
      'persona-webhook-first-attempted-at': String(groups[0]!.timestamp)
    })
  })

  t.test('a wrong secret prints the 401 and exits 1', async (t) => {
    const before = subscriber.received.length
    const result = await run(['send', 'inquiry.approved', '--url', url, '--secret', OTHER_SECRET, '--count', '2'])
    t.equal(result.code, 1)
    t.equal(result.out.length, 2, 'every attempt reported')
    for (const answer of answers(result.out)) t.match(answer, { status: 401, body: { code: 'PERSONA_SIGNATURE_MISMATCH' } })
    t.equal(subscriber.received.length, before)
  })
})

t.test('send to an unreachable URL says so and exits 1', async (t) => {
  const port = await freePort()
  const result = await run(['send', 'inquiry.approved', '--url', `http://127.0.0.1:${port}/webhooks/persona`, '--secret', SECRET])
  t.equal(result.code, 1)
  t.same(result.out, [])
  t.same(result.err, [`could not reach http://127.0.0.1:${port}/webhooks/persona: ECONNREFUSED`])
})

t.test('usage mistakes exit 2 with the reason and the usage text', async (t) => {
  const fixture = FIXTURE
  const cases: [string, string[], NodeJS.ProcessEnv, string][] = [
    ['no url', ['send', 'inquiry.approved', '--secret', SECRET], {}, '--url is required'],
    ['an empty url', ['send', 'inquiry.approved', '--url', '', '--secret', SECRET], {}, '--url is required'],
    ['no secret', ['send', 'inquiry.approved', '--url', 'http://127.0.0.1:1/'], {}, '--secret (or PERSONA_WEBHOOK_SECRET) is required'],
    ['an empty secret list', ['send', 'inquiry.approved', '--url', 'http://127.0.0.1:1/', '--secret', ' , '], {}, '--secret (or PERSONA_WEBHOOK_SECRET) is required'],
    ['no event', ['send', '--url', 'http://127.0.0.1:1/', '--secret', SECRET], {}, 'an event name or a .json file is required'],
    ['a zero count', ['send', 'x.y', '--url', 'http://127.0.0.1:1/', '--secret', SECRET, '--count', '0'], {}, '--count must be a positive integer'],
    ['a word for a count', ['send', 'x.y', '--url', 'http://127.0.0.1:1/', '--secret', SECRET, '--count', 'three'], {}, '--count must be a positive integer'],
    ['a fractional count', ['send', 'x.y', '--url', 'http://127.0.0.1:1/', '--secret', SECRET, '--count', '1.5'], {}, '--count must be a positive integer'],
    ['a missing file', ['send', join(ROOT, 'test/fixtures/missing.json'), '--url', 'http://127.0.0.1:1/', '--secret', SECRET], {}, 'cannot read'],
    ['an unknown command', ['sned', 'x.y'], {}, 'unknown command "sned"'],
    ['an unknown option', ['send', fixture, '--url', 'http://127.0.0.1:1/', '--secret', SECRET, '--bogus'], {}, "Unknown option '--bogus'"],
    ['a value missing after an option', ['send', 'x.y', '--secret', SECRET, '--url'], {}, "Option '--url <value>' argument missing"],
    ['verify without a body', ['verify', '--header', VECTORS.header_single, '--secret', SECRET], {}, '--body is required'],
    ['verify without a header', ['verify', '--body', '-', '--secret', SECRET], {}, '--header is required'],
    ['verify without a secret', ['verify', '--body', '-', '--header', VECTORS.header_single], {}, '--secret (or PERSONA_WEBHOOK_SECRET) is required'],
    ['verify with a bad --now', ['verify', '--body', '-', '--header', 'x', '--secret', SECRET, '--now', 'yesterday'], {}, '--now must be a positive integer'],
    ['verify with a missing body file', ['verify', '--body', join(ROOT, 'nope.json'), '--header', 'x', '--secret', SECRET], {}, 'cannot read'],
    ['demo-subscriber with a bad port', ['demo-subscriber', '--port', 'http'], {}, '--port must be a positive integer'],
    ['no command at all', [], {}, USAGE_HEAD]
  ]
  for (const [what, argv, env, message] of cases) {
    const result = await run(argv, env)
    t.equal(result.code, 2, `${what}: exit code`)
    t.match(result.text, message, `${what}: says why`)
    t.match(result.text, USAGE_HEAD, `${what}: shows the usage`)
    t.match(result.text, 'persona-relay send <event-name|file.json> --url <intake URL>', `${what}: with each command's usage`)
  }
})

t.test('help prints the usage and exits 0', async (t) => {
  for (const command of ['help', '--help']) {
    const result = await run([command])
    t.equal(result.code, 0)
    t.match(result.out.join('\n'), USAGE_HEAD)
    t.match(result.out.join('\n'), 'persona-relay verify --body')
    t.match(result.out.join('\n'), 'persona-relay demo-subscriber')
  }
})

t.test('verify', async (t) => {
  const dir = t.testdir({ 'body.json': VECTORS.body, 'body-with-newline.json': `${VECTORS.body}\n` })
  const bodyFile = join(dir, 'body.json')
  const base = ['verify', '--body', bodyFile, '--now', String(VECTORS.t)]

  t.test('the test vector verifies at its own time', async (t) => {
    const result = await run([...base, '--header', VECTORS.header_single, '--secret', VECTORS.secret_new])
    t.equal(result.code, 0, result.text)
    t.same(result.out, ['verified: signed at 2026-01-01T00:00:00.000Z (t=1767225600)'])
  })

  t.test('the rotation header verifies under either secret, and the secret may come from the environment', async (t) => {
    for (const secret of [VECTORS.secret_new, VECTORS.secret_old]) {
      const result = await run([...base, '--header', VECTORS.header_rotation], { PERSONA_WEBHOOK_SECRET: secret })
      t.equal(result.code, 0, result.text)
      t.match(result.out[0], /^verified:/)
    }
  })

  t.test('a wrong secret explains that no v1 matches and lists the v1 each secret expects', async (t) => {
    const result = await run([...base, '--header', VECTORS.header_single, '--secret', `${VECTORS.secret_old},${OTHER_SECRET}`])
    t.equal(result.code, 1)
    t.equal(result.out[0], 'not verified: no v1 matches this body under the given secret(s): wrong secret, or the body was changed (re-serialised JSON, a proxy, a trailing newline)')
    t.equal(result.out[1], `  group t=${VECTORS.t} (0 s ago), tolerance 300 s`)
    t.equal(result.out[2], `    secret #1 expects v1=${VECTORS.v1_old}`, 'the independently computed v1 of the old secret')
    t.equal(result.out[3], `    secret #2 expects v1=${computeSignature(OTHER_SECRET, VECTORS.t, Buffer.from(VECTORS.body))}`)
    t.equal(result.out.length, 4)
  })

  t.test('a body with a trailing newline is a mismatch, and the expected v1 shows the difference', async (t) => {
    const result = await run(['verify', '--body', join(dir, 'body-with-newline.json'), '--now', String(VECTORS.t),
      '--header', VECTORS.header_single, '--secret', VECTORS.secret_new])
    t.equal(result.code, 1)
    t.match(result.out[0], /^not verified: no v1 matches/)
    t.notMatch(result.out[2], VECTORS.v1_new)
  })

  t.test('a stale t explains the time window, in the past and in the future', async (t) => {
    const late = await run(['verify', '--body', bodyFile, '--now', String(VECTORS.t + 301), '--header', VECTORS.header_single, '--secret', VECTORS.secret_new])
    t.equal(late.code, 1)
    t.equal(late.out[0], 'not verified: a v1 matches, but its t is outside the time window (a replay, or a clock off by more than the tolerance)')
    t.equal(late.out[1], `  group t=${VECTORS.t} (301 s ago), tolerance 300 s`)
    t.equal(late.out[2], `    secret #1 expects v1=${VECTORS.v1_new}`)

    const early = await run(['verify', '--body', bodyFile, '--now', String(VECTORS.t - 61), '--tolerance', '60', '--header', VECTORS.header_single, '--secret', VECTORS.secret_new])
    t.equal(early.code, 1)
    t.match(early.out[0], /outside the time window/)
    t.equal(early.out[1], `  group t=${VECTORS.t} (61 s in the future), tolerance 60 s`)

    const edge = await run(['verify', '--body', bodyFile, '--now', String(VECTORS.t + 300), '--header', VECTORS.header_single, '--secret', VECTORS.secret_new])
    t.equal(edge.code, 0, 'exactly the tolerance is still inside')
  })

  t.test('a header without a usable group says so', async (t) => {
    const result = await run([...base, '--header', 'sha256=abc', '--secret', VECTORS.secret_new])
    t.equal(result.code, 1)
    t.same(result.out, ['not verified: the header has no usable t=<unix seconds>,v1=<hex> group (or more than 8 groups)'])
  })

  t.test('the body can come from standard input', async (t) => {
    let reads = 0
    const stdin = async () => {
      reads += 1
      return Buffer.from(VECTORS.body)
    }
    const result = await run(['verify', '--body', '-', '--now', String(VECTORS.t), '--header', VECTORS.header_single, '--secret', VECTORS.secret_new], {}, stdin)
    t.equal(result.code, 0, result.text)
    t.match(result.out[0], /^verified:/)
    t.equal(reads, 1)
  })
})

interface Spawned {
  code: number | null
  stdout: string
  stderr: string
}

/** `src/cli/index.ts` as a process of its own, as `persona-relay` runs from dist/. */
async function spawnCli(argv: string[], env: NodeJS.ProcessEnv, stdin?: string): Promise<Spawned> {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([key]) => key !== 'PERSONA_WEBHOOK_SECRET'))
  const child = spawn(process.execPath, [...LOADER_ARGS, 'src/cli/index.ts', ...argv], {
    cwd: ROOT,
    env: { ...inherited, ...env },
    stdio: ['pipe', 'pipe', 'pipe']
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  child.stdin.end(stdin ?? '')
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
  const [code] = (await once(child, 'exit')) as [number | null]
  clearTimeout(timer)
  return { code, stdout, stderr }
}

t.test('the persona-relay bin, as a process', async (t) => {
  const { url, subscriber } = await relayWithSubscriber(t)
  const [sent, verified, mistaken] = await Promise.all([
    spawnCli(['send', 'inquiry.approved', '--url', url], { PERSONA_WEBHOOK_SECRET: SECRET }),
    spawnCli(['verify', '--body', '-', '--now', String(VECTORS.t), '--header', VECTORS.header_single, '--secret', VECTORS.secret_new], {}, VECTORS.body),
    spawnCli(['send', 'inquiry.approved', '--secret', SECRET], {})
  ])

  t.equal(sent.code, 0, `send exits 0 (${sent.stderr})`)
  const [answer] = answers(sent.stdout.trim().split('\n'))
  t.match(answer, { status: 200, body: { received: true, id: EVENT_ID } })
  const [delivery] = await subscriber.waitFor(1)
  t.equal(delivery!.headers['webhook-id'], answer!.body.id, 'the event reached the subscriber')

  t.equal(verified.code, 0, `verify reads the body from standard input (${verified.stderr})`)
  t.equal(verified.stdout, 'verified: signed at 2026-01-01T00:00:00.000Z (t=1767225600)\n')

  t.equal(mistaken.code, 2, 'a usage mistake exits 2')
  t.match(mistaken.stderr, /^persona-relay: --url is required\n\npersona-relay <command>/)
  t.equal(mistaken.stdout, '')
})
