import t from 'tap'
import { compilePattern, createEventRouter, createRouter } from '../../src/config/routing.js'

t.test('patterns match event names as documented', async (t) => {
  const cases: [string, string, boolean][] = [
    ['inquiry.approved', 'inquiry.approved', true],
    ['inquiry.approved', 'inquiry.approved.extra', false],
    ['inquiry.approved', 'xinquiry.approved', false],
    ['inquiry.approved', 'inquiry.declined', false],
    ['inquiry.approved', 'Inquiry.Approved', false],
    ['inquiry.approved', 'inquiryXapproved', false],
    ['inquiry.approved', 'inquiry-approved', false],
    ['inquiry.*', 'inquiry.approved', true],
    ['inquiry.*', 'inquiry.marked-for-review', true],
    ['inquiry.*', 'inquiry.', true],
    ['inquiry.*', 'inquiry-session.started', false],
    ['inquiry.*', 'inquiryXapproved', false],
    ['inquiry.*', 'inquiry', false],
    ['inquiry.*', 'report/inquiry.approved', false],
    ['report/*', 'report/watchlist.matched', true],
    ['report/*', 'report/crypto_address.ready', true],
    ['report/*', 'report.watchlist', false],
    ['report/*', 'reports/watchlist.matched', false],
    ['*.failed', 'inquiry.failed', true],
    ['*.failed', 'verification.failed', true],
    ['*.failed', 'report/watchlist.failed', true],
    ['*.failed', 'inquiry.failed.twice', false],
    ['*.failed', 'inquiryfailed', false],
    ['*.failed', 'inquiry.unfailed', false],
    ['*', 'inquiry.approved', true],
    ['*', 'report/watchlist.matched', true],
    ['*', 'connect/share-token.created', true],
    ['*', '', true],
    ['**', 'anything.at/all', true],
    ['inquiry.*.*', 'inquiry.a.b', true],
    ['inquiry.*.*', 'inquiry.a', false],
    ['*-session.*', 'inquiry-session.started', true],
    ['*-session.*', 'inquirysession.started', false],
    ['graph-query.cancelled', 'graph-query.cancelled', true],
    ['graph-query.cancelled', 'graph-query.canceled', false],
    ['report/crypto_address.*', 'report/crypto_address.ready', true]
  ]
  for (const [pattern, name, expected] of cases) {
    t.equal(compilePattern(pattern).test(name), expected, `${pattern} ${expected ? 'matches' : 'does not match'} ${JSON.stringify(name)}`)
  }
})

t.test('regression: * matches across a line break in a name', async (t) => {
  t.ok(compilePattern('*').test('inquiry.approved\n'))
  t.ok(compilePattern('inquiry.*').test('inquiry.a\nb'))
  t.notOk(compilePattern('inquiry.approved').test('inquiry.approved\n'))
})

t.test('regular expression metacharacters in patterns are literal', async (t) => {
  const cases: [string, string, boolean][] = [
    ['a+b', 'a+b', true],
    ['a+b', 'aab', false],
    ['a?b', 'a?b', true],
    ['a?b', 'b', false],
    ['a^b$', 'a^b$', true],
    ['(a|b)', '(a|b)', true],
    ['(a|b)', 'a', false],
    ['a|b', 'a', false],
    ['[ab]', '[ab]', true],
    ['[ab]', 'a', false],
    ['a{2}', 'a{2}', true],
    ['a{2}', 'aa', false],
    ['a\\d', 'a\\d', true],
    ['a\\d', 'a1', false],
    ['a.b', 'a.b', true],
    ['a.b', 'a\nb', false],
    ['.*', '.anything', true],
    ['.*', 'anything', false],
    ['a/b-c', 'a/b-c', true],
    ['a+*', 'a+approved', true],
    ['a+*', 'aa', false]
  ]
  for (const [pattern, name, expected] of cases) {
    t.equal(compilePattern(pattern).test(name), expected, `${pattern} ${expected ? 'matches' : 'does not match'} ${JSON.stringify(name)}`)
  }
})

t.test('the router names every subscriber with a matching pattern, in configuration order', async (t) => {
  const route = createRouter([
    { name: 'AUDIT', patterns: ['*'] },
    { name: 'CRM', patterns: ['inquiry.approved', 'inquiry.declined'] },
    { name: 'RISK', patterns: ['report/*', '*.failed'] },
    { name: 'KYC', patterns: ['inquiry.*', 'verification.*'] },
    { name: 'NONE', patterns: [] }
  ])
  const cases: [string, string[]][] = [
    ['inquiry.approved', ['AUDIT', 'CRM', 'KYC']],
    ['inquiry.declined', ['AUDIT', 'CRM', 'KYC']],
    ['inquiry.failed', ['AUDIT', 'RISK', 'KYC']],
    ['verification.passed', ['AUDIT', 'KYC']],
    ['report/watchlist.matched', ['AUDIT', 'RISK']],
    ['case.created', ['AUDIT']],
    ['inquiryXapproved', ['AUDIT']]
  ]
  for (const [name, expected] of cases) t.same(route(name), expected, name)
})

t.test('an event no subscriber wants routes to nobody', async (t) => {
  t.same(createRouter([])('inquiry.approved'), [])
  t.same(createRouter([{ name: 'CRM', patterns: ['inquiry.*'] }])('case.created'), [])
})

t.test('a repeated name gets the same answer from the memo', async (t) => {
  const route = createRouter([{ name: 'CRM', patterns: ['inquiry.*'] }])
  const first = route('inquiry.approved')
  t.same(first, ['CRM'])
  t.equal(route('inquiry.approved'), first, 'the memoised answer is returned')
  t.same(route('case.created'), [])
  t.same(route('case.created'), [])
})

t.test('memoised answers stay correct past the cache limit of 1024 names', async (t) => {
  const route = createRouter([
    { name: 'EVEN', patterns: ['even.*'] },
    { name: 'ALL', patterns: ['*'] }
  ])
  const nameOf = (index: number) => `${index % 2 === 0 ? 'even' : 'odd'}.${index}`
  const expected = (index: number) => (index % 2 === 0 ? ['EVEN', 'ALL'] : ['ALL'])
  let wrong = 0
  for (let round = 0; round < 2; round++) {
    for (let index = 0; index < 3000; index++) {
      if (JSON.stringify(route(nameOf(index))) !== JSON.stringify(expected(index))) wrong++
    }
  }
  t.equal(wrong, 0, 'every answer over 3000 names, twice, is right')
  for (const index of [0, 1, 1023, 1024, 1025, 2047, 2048, 2999]) {
    t.same(route(nameOf(index)), expected(index), nameOf(index))
  }
  const answer = route('even.fresh')
  t.equal(route('even.fresh'), answer, 'names seen after the limit are still memoised')
})

const APPROVED_A_OR_B = '{"payload.data.attributes.status":"approved","payload.data.attributes.inquiry-template-id":{"$in":["itmpl_A","itmpl_B"]}}'

function inquiry(status: string, template: string, inflection: 'kebab' | 'camel' | 'snake' = 'kebab'): Record<string, unknown> {
  const key = { kebab: 'inquiry-template-id', camel: 'inquiryTemplateId', snake: 'inquiry_template_id' }[inflection]
  return { payload: { data: { type: 'inquiry', id: 'inq_1', attributes: { status, [key]: template } } } }
}

t.test('the event router sends an event to subscribers whose patterns match and whose filter, if any, lets it through', async (t) => {
  const route = createEventRouter([
    { name: 'AUDIT', patterns: ['*'] },
    { name: 'CRM', patterns: ['inquiry.*'], filter: APPROVED_A_OR_B },
    { name: 'KYC', patterns: ['inquiry.*'] },
    { name: 'RISK', patterns: ['inquiry.*', 'report/*'], filter: '{"payload.data.attributes.status":{"$in":["declined","failed"]}}' },
    { name: 'REPORTS', patterns: ['report/*'], filter: '{"payload.data.attributes.status":"ready"}' }
  ])
  const cases: [string, string, Record<string, unknown>, { subscribers: string[]; filtered: string[] }][] = [
    ['approved, template A', 'inquiry.approved', inquiry('approved', 'itmpl_A'), { subscribers: ['AUDIT', 'CRM', 'KYC'], filtered: ['RISK'] }],
    ['approved, template B, camel', 'inquiry.approved', inquiry('approved', 'itmpl_B', 'camel'), { subscribers: ['AUDIT', 'CRM', 'KYC'], filtered: ['RISK'] }],
    ['approved, template A, snake', 'inquiry.approved', inquiry('approved', 'itmpl_A', 'snake'), { subscribers: ['AUDIT', 'CRM', 'KYC'], filtered: ['RISK'] }],
    ['approved, template C', 'inquiry.approved', inquiry('approved', 'itmpl_C'), { subscribers: ['AUDIT', 'KYC'], filtered: ['CRM', 'RISK'] }],
    ['declined, template A', 'inquiry.declined', inquiry('declined', 'itmpl_A'), { subscribers: ['AUDIT', 'KYC', 'RISK'], filtered: ['CRM'] }],
    ['no attributes at all', 'inquiry.created', {}, { subscribers: ['AUDIT', 'KYC'], filtered: ['CRM', 'RISK'] }],
    ['a report that is ready', 'report/watchlist.ready', { payload: { data: { attributes: { status: 'ready' } } } }, { subscribers: ['AUDIT', 'REPORTS'], filtered: ['RISK'] }],
    ['a report that failed', 'report/watchlist.ready', { payload: { data: { attributes: { status: 'failed' } } } }, { subscribers: ['AUDIT', 'RISK'], filtered: ['REPORTS'] }],
    ['a filtered subscriber whose patterns do not match is neither', 'case.created', inquiry('approved', 'itmpl_A'), { subscribers: ['AUDIT'], filtered: [] }]
  ]
  for (const [label, name, attributes, expected] of cases) t.strictSame(route({ name, attributes }), expected, label)
})

t.test('without filters the event router answers as the name router does', async (t) => {
  const subscribers = [
    { name: 'AUDIT', patterns: ['*'] },
    { name: 'CRM', patterns: ['inquiry.approved'], filter: undefined },
    { name: 'RISK', patterns: ['*.failed'] }
  ]
  const route = createEventRouter(subscribers)
  const byName = createRouter(subscribers)
  for (const name of ['inquiry.approved', 'inquiry.failed', 'case.created']) {
    t.strictSame(route({ name, attributes: inquiry('declined', 'itmpl_Z') }), { subscribers: byName(name), filtered: [] }, name)
  }
  t.strictSame(createEventRouter([])({ name: 'inquiry.approved', attributes: {} }), { subscribers: [], filtered: [] })
})

t.test('the name memo does not memoise filter answers: one name routes by each event\'s own attributes', async (t) => {
  const route = createEventRouter([
    { name: 'ALL', patterns: ['inquiry.*'] },
    { name: 'CRM', patterns: ['inquiry.*'], filter: APPROVED_A_OR_B }
  ])
  const answers = ['itmpl_A', 'itmpl_C', 'itmpl_B', 'itmpl_C', 'itmpl_A'].map((template) => route({ name: 'inquiry.approved', attributes: inquiry('approved', template) }))
  t.strictSame(answers.map((routing) => routing.filtered), [[], ['CRM'], [], ['CRM'], []])
  t.strictSame(answers.map((routing) => routing.subscribers), [['ALL', 'CRM'], ['ALL'], ['ALL', 'CRM'], ['ALL'], ['ALL', 'CRM']])
})

t.test('an invalid filter stops the event router from being made, naming the variable', async (t) => {
  const cases: [string, RegExp][] = [
    ['', /^SUBSCRIBER_CRM_FILTER: not JSON/],
    ['{"status":', /^SUBSCRIBER_CRM_FILTER: not JSON/],
    ['["approved"]', /^SUBSCRIBER_CRM_FILTER: must be a JSON object/],
    ['{"$where":"true"}', /^SUBSCRIBER_CRM_FILTER: \$where is refused: filters may not run code$/],
    ['{"status":{"$foo":1}}', /^SUBSCRIBER_CRM_FILTER: Unsupported operation: \$foo$/]
  ]
  for (const [filter, expected] of cases) {
    t.throws(() => createEventRouter([{ name: 'AUDIT', patterns: ['*'] }, { name: 'CRM', patterns: ['inquiry.*'], filter }]), expected, JSON.stringify(filter))
  }
})

t.test('a filter that throws on an event refuses it, and the router says so, instead of failing the webhook', async (t) => {
  const route = createEventRouter(
    [{ name: 'ALL', patterns: ['*'] }, { name: 'BROKEN', patterns: ['*'], filter: '{}' }],
    () => () => {
      throw new Error('cannot evaluate')
    }
  )
  t.same(route({ name: 'inquiry.approved', attributes: {} }), { subscribers: ['ALL'], filtered: ['BROKEN'], filterErrors: ['BROKEN'] })
})

t.test('a filter the router cannot compile stops it with the variable named', async (t) => {
  t.throws(() => createEventRouter([{ name: 'KYC', patterns: ['*'], filter: '{' }]), { message: /^SUBSCRIBER_KYC_FILTER: not JSON/ })
})
