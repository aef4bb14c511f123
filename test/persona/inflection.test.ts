import { readFileSync } from 'node:fs'
import t from 'tap'
import { kebabCase, kebabKeys } from '../../src/persona/inflection.js'

t.test('kebabCase turns camelCase and snake_case keys into kebab-case and leaves kebab-case alone', async (t) => {
  const cases: [string, string][] = [
    ['created-at', 'created-at'],
    ['createdAt', 'created-at'],
    ['created_at', 'created-at'],
    ['inquiry-template-id', 'inquiry-template-id'],
    ['inquiryTemplateId', 'inquiry-template-id'],
    ['inquiry_template_id', 'inquiry-template-id'],
    ['markedForReviewAt', 'marked-for-review-at'],
    ['marked_for_review_at', 'marked-for-review-at'],
    ['status', 'status'],
    ['Status', 'status'],
    ['id', 'id'],
    ['ID', 'id'],
    ['userID', 'user-id'],
    ['botScore', 'bot-score'],
    ['name1First', 'name1-first'],
    ['a1B2', 'a1-b2'],
    ['inquiry_templateId', 'inquiry-template-id'],
    ['Name-First', 'name-first'],
    ['a__b', 'a--b'],
    ['_leading', '-leading'],
    ['trailing_', 'trailing-'],
    ['x', 'x'],
    ['', ''],
    ['$in', '$in'],
    ['0', '0']
  ]
  for (const [key, expected] of cases) t.equal(kebabCase(key), expected, `${JSON.stringify(key)} -> ${JSON.stringify(expected)}`)
})

t.test('every key of the fixtures reads the same whichever inflection Persona sent it in', async (t) => {
  // Persona's own spellings of one key: kebab, camel, snake.
  const spellings: [string, string, string][] = [
    ['reference-id', 'referenceId', 'reference_id'],
    ['reviewer-comment', 'reviewerComment', 'reviewer_comment'],
    ['previous-step-name', 'previousStepName', 'previous_step_name'],
    ['behavior-threat-level', 'behaviorThreatLevel', 'behavior_threat_level'],
    ['address-country-code', 'addressCountryCode', 'address_country_code'],
    ['inquiry-template-version', 'inquiryTemplateVersion', 'inquiry_template_version'],
    ['id-class', 'idClass', 'id_class']
  ]
  for (const [kebab, camel, snake] of spellings) {
    t.strictSame([kebabCase(kebab), kebabCase(camel), kebabCase(snake)], [kebab, kebab, kebab], kebab)
  }
})

t.test('kebabKeys copies a value with every object key in kebab-case, at any depth, values untouched', async (t) => {
  const cases: [string, unknown, unknown][] = [
    ['null', null, null],
    ['a string value keeps its case', 'someValue_x', 'someValue_x'],
    ['a number', 1.5, 1.5],
    ['a boolean', false, false],
    ['an empty object', {}, {}],
    ['an empty array', [], []],
    ['flat camel keys', { createdAt: 'x', botScore: 3 }, { 'created-at': 'x', 'bot-score': 3 }],
    ['flat snake keys', { created_at: 'x', bot_score: 3 }, { 'created-at': 'x', 'bot-score': 3 }],
    ['flat kebab keys', { 'created-at': 'x' }, { 'created-at': 'x' }],
    [
      'nested objects',
      { payload: { data: { attributes: { inquiryTemplateId: 'itmpl_A', nameFirst: { value: 'ALEX' } } } } },
      { payload: { data: { attributes: { 'inquiry-template-id': 'itmpl_A', 'name-first': { value: 'ALEX' } } } } }
    ],
    [
      'objects inside arrays',
      { included: [{ idClass: 'dl', countryCode: 'US' }, { id_class: 'pp' }] },
      { included: [{ 'id-class': 'dl', 'country-code': 'US' }, { 'id-class': 'pp' }] }
    ],
    ['arrays of arrays', [[{ aB: 1 }], [2, 'cD']], [[{ 'a-b': 1 }], [2, 'cD']]],
    ['values that look like keys', { status: 'markedForReview', tags: ['inquiry_approved', 'aB'] }, { status: 'markedForReview', tags: ['inquiry_approved', 'aB'] }],
    ['null and nested nulls', { reviewerComment: null, list: [null] }, { 'reviewer-comment': null, list: [null] }]
  ]
  for (const [label, value, expected] of cases) {
    const before = JSON.stringify(value)
    t.strictSame(kebabKeys(value), expected, label)
    t.equal(JSON.stringify(value), before, `${label}: the input is not changed`)
  }
})

t.test('kebabKeys returns a copy, not the input objects', async (t) => {
  const inner = { nameFirst: 'ALEX' }
  const list = [inner]
  const value = { fields: inner, list }
  const copy = kebabKeys(value) as { fields: Record<string, unknown>; list: unknown[] }
  t.not(copy, value)
  t.not(copy.fields, inner)
  t.not(copy.list, list)
  copy.fields['name-first'] = 'CHANGED'
  t.equal(inner.nameFirst, 'ALEX', 'changing the copy does not change the input')
})

t.test('the three fixtures read the same once their keys are in kebab-case', async (t) => {
  const read = (name: string) => JSON.parse(readFileSync(new URL(`../fixtures/${name}`, import.meta.url), 'utf8')) as { data: { id: string } }
  const kebab = read('inquiry.approved.json')
  const camel = read('inquiry.approved.camel.json')
  const snake = read('inquiry.approved.snake.json')
  // The fixtures differ in their event ids only, apart from key inflection.
  for (const body of [kebab, camel, snake]) body.data.id = 'evt_same'
  t.notSame(camel, kebab, 'the camel fixture is spelled differently')
  t.notSame(snake, kebab, 'the snake fixture is spelled differently')
  t.strictSame(kebabKeys(camel), kebab, 'camel read as kebab is the kebab fixture')
  t.strictSame(kebabKeys(snake), kebab, 'snake read as kebab is the kebab fixture')
  t.strictSame(kebabKeys(kebab), kebab, 'kebab is unchanged')
})
