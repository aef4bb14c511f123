import { createHmac } from 'node:crypto'
import t from 'tap'
import { Webhook } from 'standardwebhooks'
import { standardWebhookSignature } from '../../src/delivery/outbound-signature.js'

const SECRET_A = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'
const SECRET_B = 'whsec_dGhpcyBpcyBhIHNlY29uZCBzZWNyZXQ='
const ID = 'evt_7QkT2mZr9VbX4nLp8sWc3hJd'
const BODY = '{"data":{"type":"event","id":"evt_7QkT2mZr9VbX4nLp8sWc3hJd","attributes":{"name":"inquiry.approved","note":"Zoë ✓"}}}'

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000)
}

function headers(signature: string, timestamp: number, id = ID) {
  return { 'webhook-id': id, 'webhook-timestamp': String(timestamp), 'webhook-signature': signature }
}

/** The Standard Webhooks signature computed by hand with node:crypto, independently of the module. */
function byHand(secret: string, id: string, timestamp: number, body: string): string {
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64')
  return `v1,${createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64')}`
}

t.test('one secret: the standardwebhooks library verifies the signature', async (t) => {
  const timestamp = nowSeconds()
  const signature = standardWebhookSignature([SECRET_A], ID, timestamp, BODY)
  t.match(signature, /^v1,[A-Za-z0-9+/]{43}=$/)
  t.same(new Webhook(SECRET_A).verify(BODY, headers(signature, timestamp)), JSON.parse(BODY))
})

t.test('a Buffer body signs the same bytes as its string', async (t) => {
  const timestamp = nowSeconds()
  const signature = standardWebhookSignature([SECRET_A], ID, timestamp, Buffer.from(BODY, 'utf8'))
  t.equal(signature, standardWebhookSignature([SECRET_A], ID, timestamp, BODY))
  t.same(new Webhook(SECRET_A).verify(Buffer.from(BODY, 'utf8'), headers(signature, timestamp)), JSON.parse(BODY))
})

t.test('two secrets: each secret alone verifies the two-signature header', async (t) => {
  const timestamp = nowSeconds()
  const signature = standardWebhookSignature([SECRET_A, SECRET_B], ID, timestamp, BODY)
  t.match(signature, /^v1,\S+ v1,\S+$/)
  for (const secret of [SECRET_A, SECRET_B]) {
    t.same(new Webhook(secret).verify(BODY, headers(signature, timestamp)), JSON.parse(BODY), secret)
  }
})

t.test('the library rejects the signature under another secret, id, timestamp or body', async (t) => {
  const timestamp = nowSeconds()
  const signature = standardWebhookSignature([SECRET_A], ID, timestamp, BODY)
  const other = 'whsec_b3RoZXItc2VjcmV0LWtleS0xMjM0NTY3ODkw'
  t.throws(() => new Webhook(other).verify(BODY, headers(signature, timestamp)), { message: 'No matching signature found' })
  t.throws(() => new Webhook(SECRET_A).verify(BODY, headers(signature, timestamp, 'evt_other')), { message: 'No matching signature found' })
  t.throws(() => new Webhook(SECRET_A).verify(BODY, headers(signature, timestamp - 1)), { message: 'No matching signature found' })
  t.throws(() => new Webhook(SECRET_A).verify(`${BODY} `, headers(signature, timestamp)), { message: 'No matching signature found' })
})

t.test('the signature equals a hand computation over id.timestamp.body keyed by the decoded secret', async (t) => {
  const cases: [string[], string, number, string][] = [
    [[SECRET_A], ID, 1767225600, BODY],
    [[SECRET_B], 'evt_x', 0, ''],
    [[SECRET_A, SECRET_B], ID, 1767225600, BODY],
    [[SECRET_B, SECRET_A], 'msg_2', 1700000000, '{}']
  ]
  for (const [secrets, id, timestamp, body] of cases) {
    t.equal(
      standardWebhookSignature(secrets, id, timestamp, body),
      secrets.map((secret) => byHand(secret, id, timestamp, body)).join(' '),
      `${secrets.length} secret(s), id ${id}, t ${timestamp}`
    )
  }
})

t.test('the key is the base64-decoded secret, not the secret text', async (t) => {
  const asText = createHmac('sha256', SECRET_A).update(`${ID}.1.${BODY}`).digest('base64')
  t.not(standardWebhookSignature([SECRET_A], ID, 1, BODY), `v1,${asText}`)
})

t.test('a secret without the whsec_ prefix is read as bare base64', async (t) => {
  const bare = SECRET_B.slice('whsec_'.length)
  t.equal(standardWebhookSignature([bare], ID, 1767225600, BODY), standardWebhookSignature([SECRET_B], ID, 1767225600, BODY))
})

t.test('no secrets give an empty signature', async (t) => {
  t.equal(standardWebhookSignature([], ID, 1767225600, BODY), '')
})
