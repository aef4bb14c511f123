import t from 'tap'
import { computeSignature } from '../../src/persona/signature.js'
import { personaEvent, SECRET, startRelay, uniqueEventId } from '../helpers/app.js'

const ROUNDS = 8
const REQUESTS_PER_ROUND = 10

/** CPU microseconds this process spends answering `count` requests with the given header. */
async function cpuOf(send: () => Promise<{ statusCode: number }>, count: number) {
  const before = process.cpuUsage()
  for (let i = 0; i < count; i += 1) {
    const response = await send()
    if (response.statusCode !== 401) throw new Error(`expected 401, got ${response.statusCode}`)
  }
  const used = process.cpuUsage(before)
  return used.user + used.system
}

t.test('a 401 for eight stale groups costs no more CPU than one for a single fresh group', async (t) => {
  const { app } = await startRelay(t, { PERSONA_WEBHOOK_SECRET: `${SECRET},wbhsec_second-secret-of-the-rotation`, LOG_LEVEL: 'warn' })
  // About 1 MB: hashing it once per group and secret is what an unauthenticated sender could multiply.
  const body = personaEvent(uniqueEventId(), 'inquiry.approved', { padding: 'x'.repeat(1_000_000) })
  const now = Math.floor(Date.now() / 1000)
  const wrong = (timestamp: number) => `t=${timestamp},v1=${computeSignature('wbhsec_not-configured', timestamp, Buffer.from(body))}`
  const staleHeader = Array.from({ length: 8 }, (_, i) => wrong(now - 3600 - i)).join(' ')
  const freshHeader = wrong(now)
  const post = (header: string) => () => app.inject({
    method: 'POST',
    url: '/webhooks/persona',
    headers: { 'content-type': 'application/json', 'persona-signature': header },
    payload: body
  })

  t.equal((await post(staleHeader)()).json().code, 'PERSONA_SIGNATURE_STALE')
  t.equal((await post(freshHeader)()).json().code, 'PERSONA_SIGNATURE_MISMATCH')
  const stale: number[] = []
  const fresh: number[] = []
  // Alternating rounds, so that a slower moment of a shared machine weighs on both alike, and each
  // side's quickest round: a garbage collection or another process lands in some rounds, not all.
  for (let round = 0; round < ROUNDS; round += 1) {
    stale.push(await cpuOf(post(staleHeader), REQUESTS_PER_ROUND))
    fresh.push(await cpuOf(post(freshHeader), REQUESTS_PER_ROUND))
  }
  const [staleMs, freshMs] = [Math.min(...stale), Math.min(...fresh)].map((micros) => micros / REQUESTS_PER_ROUND / 1000) as [number, number]
  // Both pay for reading and parsing the body; before the stale groups were skipped they cost 16
  // HMACs of it against the fresh group's 2, about three times as much CPU. A quarter over allows for noise.
  t.ok(staleMs <= freshMs * 1.25, `eight stale groups ${staleMs.toFixed(2)} ms per 401, one fresh group ${freshMs.toFixed(2)} ms`)
})
