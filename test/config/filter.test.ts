import { readFileSync } from 'node:fs'
import t from 'tap'
import { compileFilter, type EventFilter } from '../../src/config/filter.js'

type Inflection = 'kebab' | 'camel' | 'snake'
const INFLECTIONS: readonly Inflection[] = ['kebab', 'camel', 'snake']

/** A kebab-case key as Persona spells it in another inflection (Rails' camelize / underscore). */
function inflect(key: string, inflection: Inflection): string {
  if (inflection === 'camel') return key.replace(/-([a-z0-9])/g, (_, next: string) => next.toUpperCase())
  if (inflection === 'snake') return key.replace(/-/g, '_')
  return key
}

/** A kebab-keyed body with every key in the given inflection; values untouched. */
function inflectKeys(value: unknown, inflection: Inflection): unknown {
  if (Array.isArray(value)) return value.map((item) => inflectKeys(item, inflection))
  if (typeof value !== 'object' || value === null) return value
  return Object.fromEntries(Object.entries(value).map(([key, child]) => [inflect(key, inflection), inflectKeys(child, inflection)]))
}

/** A query whose field paths (not its operators, not its values) are written in the given inflection. */
function inflectQuery(value: unknown, inflection: Inflection): unknown {
  if (Array.isArray(value)) return value.map((item) => inflectQuery(item, inflection))
  if (typeof value !== 'object' || value === null) return value
  return Object.fromEntries(Object.entries(value).map(([key, child]) => [
    key.startsWith('$') ? key : key.split('.').map((segment) => inflect(segment, inflection)).join('.'),
    inflectQuery(child, inflection)
  ]))
}

function compiled(text: string): EventFilter {
  const filter = compileFilter(text)
  if (typeof filter === 'string') throw new Error(`compileFilter refused ${text}: ${filter}`)
  return filter
}

/** An inquiry.approved event's `data.attributes` as Persona sends it in kebab-case. */
const ATTRIBUTES = {
  name: 'inquiry.approved',
  'created-at': '2026-03-02T14:05:11.482Z',
  payload: {
    data: {
      type: 'inquiry',
      id: 'inq_Fh3kP9wQz2LmN8xRt5VbC1sY',
      attributes: {
        status: 'approved',
        'inquiry-template-id': 'itmpl_A',
        'reference-id': 'user_000123',
        tags: ['vip', 'eu'],
        'reviewer-comment': null,
        'marked-for-review-at': null,
        behaviors: { 'bot-score': 3, 'behavior-threat-level': 'low' },
        fields: { 'address-country-code': { type: 'string', value: 'US' } }
      },
      relationships: { 'inquiry-template': { data: { type: 'inquiry-template', id: 'itmpl_A' } } }
    },
    included: [
      { type: 'verification/government-id', id: 'ver_1', attributes: { status: 'passed', 'id-class': 'dl', 'country-code': 'US' } },
      { type: 'verification/selfie', id: 'ver_2', attributes: { status: 'failed', 'country-code': 'FR' } }
    ]
  }
}

/** ATTRIBUTES with the inquiry's own attributes changed. */
function withInquiry(changes: Record<string, unknown>) {
  const copy = structuredClone(ATTRIBUTES)
  Object.assign(copy.payload.data.attributes, changes)
  return copy
}

const ISSUE_EXAMPLE = '{"payload.data.attributes.status":"approved","payload.data.attributes.inquiry-template-id":{"$in":["itmpl_A","itmpl_B"]}}'

t.test('the issue\'s example matches approved inquiries of the listed templates, in every inflection', async (t) => {
  const cases: [string, Record<string, unknown>, boolean][] = [
    ['approved, template A', ATTRIBUTES, true],
    ['approved, template B', withInquiry({ 'inquiry-template-id': 'itmpl_B' }), true],
    ['approved, another template', withInquiry({ 'inquiry-template-id': 'itmpl_C' }), false],
    ['declined, template A', withInquiry({ status: 'declined' }), false],
    ['no template id', withInquiry({ 'inquiry-template-id': undefined }), false],
    ['a template id that differs only in case', withInquiry({ 'inquiry-template-id': 'ITMPL_A' }), false]
  ]
  for (const filterIn of INFLECTIONS) {
    const filter = compiled(JSON.stringify(inflectQuery(JSON.parse(ISSUE_EXAMPLE), filterIn)))
    for (const [label, attributes, expected] of cases) {
      for (const bodyIn of INFLECTIONS) {
        t.equal(filter(inflectKeys(attributes, bodyIn) as Record<string, unknown>), expected, `${label}: ${filterIn} filter, ${bodyIn} body`)
      }
    }
  }
})

t.test('operators work over kebab, camel and snake bodies alike, with the filter written in any inflection', async (t) => {
  const cases: [string, unknown, boolean][] = [
    ['an empty query matches everything', {}, true],
    ['a top-level attribute', { name: 'inquiry.approved' }, true],
    ['a top-level attribute that differs', { name: 'inquiry.declined' }, false],
    ['created-at, a multi-word top-level key', { 'created-at': '2026-03-02T14:05:11.482Z' }, true],
    ['a nested field', { 'payload.data.attributes.fields.address-country-code.value': 'US' }, true],
    ['a nested field that differs', { 'payload.data.attributes.fields.address-country-code.value': 'FR' }, false],
    ['a field that is absent', { 'payload.data.attributes.no-such-field': 'x' }, false],
    ['values keep their case', { 'payload.data.attributes.status': 'Approved' }, false],
    ['values are not inflected', { 'payload.data.attributes.reference-id': 'user-000123' }, false],
    ['$exists on a null field', { 'payload.data.attributes.reviewer-comment': { $exists: true } }, true],
    ['$exists on an absent field', { 'payload.data.attributes.redacted-at': { $exists: true } }, false],
    ['$exists false on an absent field', { 'payload.data.attributes.redacted-at': { $exists: false } }, true],
    ['$exists false on a present field', { 'payload.data.attributes.marked-for-review-at': { $exists: false } }, false],
    ['$regex', { 'payload.data.attributes.reference-id': { $regex: '^user_0+123$' } }, true],
    ['$regex that does not match', { 'payload.data.attributes.reference-id': { $regex: '^account_' } }, false],
    ['$regex is case-sensitive', { 'payload.data.attributes.reference-id': { $regex: '^USER_' } }, false],
    ['$regex with $options i', { 'payload.data.attributes.reference-id': { $regex: '^USER_', $options: 'i' } }, true],
    [
      '$elemMatch with two fields of one element',
      { 'payload.included': { $elemMatch: { type: 'verification/government-id', 'attributes.id-class': 'dl' } } },
      true
    ],
    [
      '$elemMatch whose fields match different elements only',
      { 'payload.included': { $elemMatch: { type: 'verification/selfie', 'attributes.country-code': 'US' } } },
      false
    ],
    [
      '$elemMatch with an operator inside',
      { 'payload.included': { $elemMatch: { 'attributes.status': { $in: ['failed', 'requires_retry'] }, 'attributes.country-code': 'FR' } } },
      true
    ],
    ['$elemMatch that no element matches', { 'payload.included': { $elemMatch: { 'attributes.id-class': 'pp' } } }, false],
    [
      '$or with one branch true',
      { $or: [{ 'payload.data.attributes.status': 'declined' }, { 'payload.data.attributes.behaviors.bot-score': { $lt: 5 } }] },
      true
    ],
    [
      '$or with every branch false',
      { $or: [{ 'payload.data.attributes.status': 'declined' }, { 'payload.data.attributes.behaviors.bot-score': { $gte: 5 } }] },
      false
    ],
    [
      '$and',
      { $and: [{ 'payload.data.attributes.status': 'approved' }, { 'payload.data.attributes.behaviors.behavior-threat-level': 'low' }] },
      true
    ],
    [
      '$and with one branch false',
      { $and: [{ 'payload.data.attributes.status': 'approved' }, { 'payload.data.attributes.behaviors.behavior-threat-level': 'high' }] },
      false
    ],
    ['$nor', { $nor: [{ 'payload.data.attributes.status': 'declined' }, { 'payload.data.attributes.status': 'failed' }] }, true],
    ['$ne', { 'payload.data.attributes.status': { $ne: 'declined' } }, true],
    ['$nin', { 'payload.data.attributes.status': { $nin: ['approved', 'completed'] } }, false],
    ['$not', { 'payload.data.attributes.status': { $not: { $in: ['declined', 'failed'] } } }, true],
    ['$gt on a number', { 'payload.data.attributes.behaviors.bot-score': { $gt: 2 } }, true],
    ['$gt on a number, false', { 'payload.data.attributes.behaviors.bot-score': { $gt: 3 } }, false],
    ['an array contains a value', { 'payload.data.attributes.tags': 'vip' }, true],
    ['an array does not contain a value', { 'payload.data.attributes.tags': 'us' }, false],
    ['$all', { 'payload.data.attributes.tags': { $all: ['eu', 'vip'] } }, true],
    ['$size', { 'payload.data.attributes.tags': { $size: 2 } }, true],
    ['$size, false', { 'payload.data.attributes.tags': { $size: 3 } }, false],
    ['an array index in a path', { 'payload.included.1.attributes.status': 'failed' }, true],
    ['a path through an array', { 'payload.included.attributes.id-class': 'dl' }, true],
    ['a multi-word relationship key', { 'payload.data.relationships.inquiry-template.data.id': 'itmpl_A' }, true],
    ['a whole sub-object by value', { 'payload.data.relationships.inquiry-template.data': { type: 'inquiry-template', id: 'itmpl_A' } }, true]
  ]
  for (const [label, query, expected] of cases) {
    for (const filterIn of INFLECTIONS) {
      const filter = compiled(JSON.stringify(inflectQuery(query, filterIn)))
      for (const bodyIn of INFLECTIONS) {
        t.equal(filter(inflectKeys(ATTRIBUTES, bodyIn) as Record<string, unknown>), expected, `${label}: ${filterIn} filter, ${bodyIn} body`)
      }
    }
  }
})

t.test('one filter matches the kebab, camel and snake fixtures alike', async (t) => {
  const attributesOf = (name: string) =>
    (JSON.parse(readFileSync(new URL(`../fixtures/${name}`, import.meta.url), 'utf8')) as { data: { attributes: Record<string, unknown> } }).data.attributes
  const fixtures = ['inquiry.approved.json', 'inquiry.approved.camel.json', 'inquiry.approved.snake.json']
  const cases: [string, boolean][] = [
    ['{"payload.data.attributes.status":"approved","payload.data.relationships.inquiry-template.data.id":{"$in":["itmpl_Zx4Pq7Lm2Wn9Bv5Rt1Kc8Hs3"]}}', true],
    ['{"payload.data.attributes.status":"approved","payload.data.relationships.inquiry-template.data.id":{"$in":["itmpl_A","itmpl_B"]}}', false],
    ['{"payload.data.attributes.behaviors.bot-score":{"$lte":3},"payload.data.attributes.fields.address-country-code.value":"US"}', true],
    ['{"payload.data.attributes.reference-id":{"$regex":"^user_"}}', true],
    ['{"payload.data.attributes.next-step-name":"success","payload.data.attributes.previous-step-name":{"$regex":"selfie$"}}', true],
    ['{"payload.included":{"$elemMatch":{"attributes.id-class":"dl","attributes.country-code":"US"}}}', true],
    ['{"payload.included":{"$elemMatch":{"attributes.id-class":"pp"}}}', false],
    ['{"payload.data.attributes.marked-for-review-at":{"$exists":true},"payload.data.attributes.redacted-at":null}', true],
    ['{"payload.data.attributes.markedForReviewAt":{"$exists":true}}', true],
    ['{"payload.data.attributes.marked_for_review_at":{"$exists":true}}', true],
    ['{"payload.data.attributes.reviewer-note":{"$exists":true}}', false],
    ['{"$or":[{"payload.data.attributes.status":"declined"},{"payload.data.attributes.creator":"API"}]}', true]
  ]
  for (const [text, expected] of cases) {
    const filter = compiled(text)
    for (const fixture of fixtures) t.equal(filter(attributesOf(fixture)), expected, `${text} on ${fixture}`)
  }
})

t.test('a filter is a pure predicate: it does not change the attributes and gives the same answer every time', async (t) => {
  const filter = compiled(ISSUE_EXAMPLE)
  const attributes = inflectKeys(ATTRIBUTES, 'camel') as Record<string, unknown>
  const before = JSON.stringify(attributes)
  const answers = [filter(attributes), filter(attributes), filter(inflectKeys(withInquiry({ status: 'declined' }), 'snake') as Record<string, unknown>), filter(attributes)]
  t.same(answers, [true, true, false, true])
  t.equal(JSON.stringify(attributes), before, 'the camel keys are still camel')
})

t.test('a filter that is not a query is refused with its problem', async (t) => {
  const NOT_AN_OBJECT = 'must be a JSON object, a query such as {"payload.data.attributes.status":"approved"}'
  const cases: [string, string | RegExp][] = [
    ['', /^not JSON \(/],
    ['approved', /^not JSON \(.+\)$/],
    ['{"status":"approved"', /^not JSON \(/],
    ["{'status':'approved'}", /^not JSON \(/],
    ['{status: "approved"}', /^not JSON \(/],
    ['[]', NOT_AN_OBJECT],
    ['[{"payload.data.attributes.status":"approved"}]', NOT_AN_OBJECT],
    ['null', NOT_AN_OBJECT],
    ['"approved"', NOT_AN_OBJECT],
    ['42', NOT_AN_OBJECT],
    ['true', NOT_AN_OBJECT],
    ['{"$where":"this.name === \'inquiry.approved\'"}', '$where is refused: filters may not run code'],
    ['{"$function":{"body":"function() { return true }","args":[],"lang":"js"}}', '$function is refused: filters may not run code'],
    ['{"$accumulator":{"init":"function() {}"}}', '$accumulator is refused: filters may not run code'],
    ['{"$expr":{"$eq":["$name","inquiry.approved"]}}', '$expr is refused: filters may not run code'],
    ['{"payload.data.attributes.status":{"$where":"true"}}', '$where is refused: filters may not run code'],
    ['{"$or":[{"name":"inquiry.approved"},{"$where":"true"}]}', '$where is refused: filters may not run code'],
    ['{"$and":[{"name":"x"},{"$or":[{"$expr":{}}]}]}', '$expr is refused: filters may not run code'],
    ['{"payload.included":{"$elemMatch":{"$function":{}}}}', '$function is refused: filters may not run code'],
    ['{"payload.data.attributes.status":{"$foo":"approved"}}', 'Unsupported operation: $foo'],
    ['{"$foo":1}', 'Unsupported operation: $foo'],
    ['{"$or":[{"name":{"$equals":"inquiry.approved"}}]}', 'Unsupported operation: $equals'],
    ['{"payload.data.attributes.status":{"$regex":"("}}', /^Invalid regular expression: /],
    ['{"payload.data.attributes.status":{"$regex":"a","$options":"zz"}}', /^Invalid flags supplied to RegExp constructor/],
    ['{"payload.included":{"$elemMatch":1}}', /\$elemMatch must by an object/]
  ]
  for (const [text, expected] of cases) {
    const problem = compileFilter(text)
    t.type(problem, 'string', `${text} is refused`)
    if (typeof expected === 'string') t.equal(problem, expected, text)
    else t.match(problem, expected, text)
  }
})

t.test('a code operator is refused even where sift would not run it, and never run', async (t) => {
  // A $where that ran would throw here: the body is not valid JavaScript.
  for (const text of ['{"$where":"throw new Error(\'ran\')"}', '{"name":{"$in":[{"$where":"("}]}}']) {
    t.equal(compileFilter(text), '$where is refused: filters may not run code', text)
  }
})

t.test('a filter that sift accepts as written is not refused', async (t) => {
  for (const text of ['{}', '{"name":"inquiry.approved"}', ISSUE_EXAMPLE, '{"payload.data.attributes.where":"$where"}', '{"payload.data.attributes.expr":{"$exists":true}}']) {
    t.type(compileFilter(text), 'function', text)
  }
  t.equal(compiled('{"payload.data.attributes.status":"$where"}')(withInquiry({ status: '$where' })), true, 'an operator name as a value is only a value')
})

t.test('regression: a field whose last word is a number matches in every inflection (address-street-1 / addressStreet1 / address_street_1)', async (t) => {
  // Persona's own field; camelised, `_1` loses its separator (Rails: "address_street_1".camelize(:lower) == "addressStreet1").
  const attributes = withInquiry({ 'address-street-1': '1 Main St' })
  t.equal(inflect('address-street-1', 'camel'), 'addressStreet1')
  for (const filterIn of INFLECTIONS) {
    const filter = compiled(JSON.stringify(inflectQuery({ 'payload.data.attributes.address-street-1': '1 Main St' }, filterIn)))
    for (const bodyIn of INFLECTIONS) {
      t.equal(filter(inflectKeys(attributes, bodyIn) as Record<string, unknown>), true, `${filterIn} filter, ${bodyIn} body`)
    }
  }
})

t.test('regression: a filter compileFilter accepts never throws when evaluated', async (t) => {
  // MongoDB's $type takes a BSON type number or alias; sift knows neither, and throws at match time.
  const texts = [
    '{"payload.data.attributes.status":{"$type":"string"}}',
    '{"payload.data.attributes.status":{"$type":2}}',
    '{"payload.data.attributes.status":{"$type":"nope"}}'
  ]
  for (const text of texts) {
    const filter = compileFilter(text)
    if (typeof filter === 'string') {
      t.pass(`${text} is refused: ${filter}`)
      continue
    }
    for (const bodyIn of INFLECTIONS) {
      t.doesNotThrow(() => filter(inflectKeys(ATTRIBUTES, bodyIn) as Record<string, unknown>), `${text} over a ${bodyIn} body`)
    }
  }
})
