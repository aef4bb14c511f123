import t from 'tap'
import { ConfigError, loadConfig } from '../../src/config/index.js'
import { allowlistEntryProblem, createAllowlist, PERSONA_KEYWORD, PERSONA_SOURCE_IPS } from '../../src/persona/source-allowlist.js'

/** Typed in again from Persona's Security page, so that a slip in the source list shows here. */
const PUBLISHED_ADDRESSES = {
  Germany: ['35.246.155.45', '34.89.193.61', '34.89.158.43', '35.198.149.197', '34.159.83.62', '34.159.68.157'],
  India: ['34.93.21.229', '35.244.13.71', '34.93.90.104', '34.93.222.99'],
  'United States': ['35.232.44.140', '34.69.131.123', '34.67.4.225', '34.66.30.174', '34.123.74.158', '34.41.116.165',
    '34.145.62.98', '34.105.116.226', '34.168.249.74', '35.199.156.187', '34.105.58.25', '35.230.80.200']
}
const ALL_PUBLISHED_ADDRESSES = Object.values(PUBLISHED_ADDRESSES).flat()

/** The same address with its last octet moved by one: outside a /32, inside any wider block. */
function neighbour(address: string, step: number): string {
  const octets = address.split('.').map(Number)
  octets[3] = (octets[3]! + step + 256) % 256
  return octets.join('.')
}

t.test('allowlistEntryProblem accepts addresses, CIDRs and the persona keyword', async (t) => {
  for (const entry of ['persona', '127.0.0.1', '0.0.0.0', '10.0.0.0/8', '10.0.0.1/8', '192.168.1.0/24', '1.2.3.4/32', '0.0.0.0/0',
    '::1', '::', '2001:db8::/32', '2001:db8::1/128', '::/0', '::ffff:10.0.0.1', 'fe80::1', '10.0.0.0/08']) {
    t.equal(allowlistEntryProblem(entry), undefined, entry)
  }
})

t.test('allowlistEntryProblem names every entry that is not an address or CIDR, and why', async (t) => {
  const notAnAddress = ['', 'localhost', 'PERSONA', 'persona.com', '1.2.3', '1.2.3.4.5', '256.1.1.1', '01.2.3.4', ' 1.2.3.4',
    '1.2.3.4 ', '10.0.0.0/8/8', '/8', '2001:db8:::1', 'gggg::1', '1.2.3.4-1.2.3.9', '*']
  for (const entry of notAnAddress) {
    t.equal(allowlistEntryProblem(entry), `"${entry}" is not an IP address or CIDR`, JSON.stringify(entry))
  }
  const badPrefix: [string, number][] = [['10.0.0.0/33', 32], ['10.0.0.0/', 32], ['10.0.0.0/-1', 32], ['10.0.0.0/abc', 32],
    ['10.0.0.0/1000', 32], ['10.0.0.0/1.5', 32], ['::/129', 128], ['2001:db8::/+8', 128]]
  for (const [entry, max] of badPrefix) {
    t.equal(allowlistEntryProblem(entry), `"${entry}" has a prefix length outside 0-${max}`, entry)
  }
})

t.test('a bad PERSONA_ALLOWED_IPS entry is a configuration error naming the entry', async (t) => {
  const error = t.throws(() => loadConfig({ PERSONA_WEBHOOK_SECRET: 'wbhsec_x', PERSONA_ALLOWED_IPS: '10.0.0.1, 10.0.0.0/33 ,nope' }))
  t.type(error, ConfigError)
  t.same((error as ConfigError).problems, [
    'PERSONA_ALLOWED_IPS: "10.0.0.0/33" has a prefix length outside 0-32',
    'PERSONA_ALLOWED_IPS: "nope" is not an IP address or CIDR'
  ])
  t.same(loadConfig({ PERSONA_WEBHOOK_SECRET: 'wbhsec_x', PERSONA_ALLOWED_IPS: ' persona , 10.0.0.0/8 ' }).allowedIps, ['persona', '10.0.0.0/8'])
})

t.test('the source list is exactly the addresses Persona publishes', async (t) => {
  t.equal(PERSONA_KEYWORD, 'persona')
  t.same([...PERSONA_SOURCE_IPS].sort(), [...ALL_PUBLISHED_ADDRESSES].sort())
  t.equal(new Set(PERSONA_SOURCE_IPS).size, 22, 'no address twice')
})

t.test('the persona keyword allows every published address and refuses their neighbours', async (t) => {
  const allowed = createAllowlist(['persona'])
  for (const [region, addresses] of Object.entries(PUBLISHED_ADDRESSES)) {
    for (const address of addresses) {
      t.ok(allowed(address), `${region} ${address}`)
      t.ok(allowed(`::ffff:${address}`), `${region} ${address} on a dual-stack socket`)
    }
  }
  for (const address of ALL_PUBLISHED_ADDRESSES) {
    for (const near of [neighbour(address, 1), neighbour(address, -1)].filter((near) => !ALL_PUBLISHED_ADDRESSES.includes(near))) {
      t.notOk(allowed(near), `neighbour ${near} of ${address}`)
    }
  }
  for (const address of ['127.0.0.1', '::1', '10.0.0.1', '35.246.155.0', '35.246.0.45', '::ffff:127.0.0.1']) {
    t.notOk(allowed(address), address)
  }
})

t.test('the keyword combines with other entries', async (t) => {
  const allowed = createAllowlist(['10.1.2.3', PERSONA_KEYWORD, '2001:db8::/48'])
  t.ok(allowed('10.1.2.3'))
  t.ok(allowed('34.93.21.229'))
  t.ok(allowed('2001:db8:0:ffff::1'))
  t.notOk(allowed('10.1.2.4'))
  t.notOk(allowed('2001:db8:1::1'))
})

t.test('IPv4 addresses and CIDRs match exactly their range', async (t) => {
  const allowed = createAllowlist(['192.0.2.7', '10.0.0.0/8', '172.16.0.0/12', '198.51.100.128/25'])
  const cases: [string, boolean][] = [
    ['192.0.2.7', true], ['192.0.2.6', false], ['192.0.2.8', false],
    ['10.0.0.0', true], ['10.255.255.255', true], ['11.0.0.0', false], ['9.255.255.255', false],
    ['172.16.0.1', true], ['172.31.255.254', true], ['172.32.0.1', false], ['172.15.255.255', false],
    ['198.51.100.128', true], ['198.51.100.255', true], ['198.51.100.127', false]
  ]
  for (const [address, expected] of cases) t.equal(allowed(address), expected, address)
})

t.test('IPv6 addresses and CIDRs match whatever way the address is written', async (t) => {
  const allowed = createAllowlist(['2001:db8::1', 'fd00::/8', '::1'])
  const cases: [string, boolean][] = [
    ['2001:db8::1', true], ['2001:DB8:0:0:0:0:0:1', true], ['2001:0db8::0001', true], ['2001:db8::2', false],
    ['fd00::1', true], ['fdff:ffff::1', true], ['fe00::1', false], ['fc00::1', false],
    ['::1', true], ['::2', false], ['127.0.0.1', false]
  ]
  for (const [address, expected] of cases) t.equal(allowed(address), expected, address)
})

t.test('an IPv4 client seen by a dual-stack socket as ::ffff:a.b.c.d is matched as IPv4', async (t) => {
  const allowed = createAllowlist(['127.0.0.1', '10.0.0.0/8'])
  t.ok(allowed('::ffff:127.0.0.1'))
  t.ok(allowed('::FFFF:127.0.0.1'), 'in capitals')
  t.ok(allowed('::ffff:7f00:1'), 'in hex')
  t.ok(allowed('::ffff:10.20.30.40'))
  t.notOk(allowed('::ffff:11.0.0.1'))
  t.notOk(allowed('::1'), 'IPv6 loopback is not 127.0.0.1')
  t.notOk(allowed('::127.0.0.1'), 'an IPv4-compatible (not mapped) address is not the IPv4 one')
})

t.test('an IPv4 rule never matches a plain IPv6 client, nor an IPv6 rule a plain IPv4 one', async (t) => {
  t.notOk(createAllowlist(['0.0.0.0/0'])('2001:db8::1'))
  t.notOk(createAllowlist(['2001:db8::/32'])('32.1.13.184'))
  t.ok(createAllowlist(['::/0'])('2001:db8::1'))
})

t.test('anything that is not an address is refused, never thrown on', async (t) => {
  const allowAll = createAllowlist(['0.0.0.0/0', '::/0'])
  for (const garbage of ['', 'unknown', 'localhost', '1.2.3', '1.2.3.4.5', '256.0.0.1', '1.2.3.4:5678', '[::1]', '::ffff:',
    '::ffff:999.1.1.1', '10.0.0.1/8', ' 10.0.0.1', 'undefined']) {
    t.equal(allowAll(garbage), false, JSON.stringify(garbage))
  }
})

t.test('an empty list allows nothing', async (t) => {
  const allowed = createAllowlist([])
  t.notOk(allowed('127.0.0.1'))
  t.notOk(allowed('35.246.155.45'))
})
