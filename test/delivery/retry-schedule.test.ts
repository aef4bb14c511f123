import t from 'tap'
import { JITTER, retryDelayMs } from '../../src/delivery/retry-schedule.js'

const SCHEDULE = [5, 30, 120, 600]
const middle = () => 0.5

t.test('the jitter allows 20% either way', async (t) => {
  t.equal(JITTER, 0.2)
})

t.test('without jitter the delay after each failed attempt follows the schedule, in milliseconds', async (t) => {
  const cases: [number, number][] = [
    [1, 5000],
    [2, 30000],
    [3, 120000],
    [4, 600000]
  ]
  for (const [attemptsMade, expected] of cases) {
    t.equal(retryDelayMs(SCHEDULE, attemptsMade, middle), expected, `after ${attemptsMade} attempt(s)`)
  }
})

t.test('the last value repeats once attempts outlast the schedule', async (t) => {
  for (const attemptsMade of [5, 6, 10, 1000]) {
    t.equal(retryDelayMs(SCHEDULE, attemptsMade, middle), 600000, `after ${attemptsMade} attempts`)
  }
})

t.test('an attempt count below one reads the first value', async (t) => {
  t.equal(retryDelayMs(SCHEDULE, 0, middle), 5000)
  t.equal(retryDelayMs(SCHEDULE, -3, middle), 5000)
})

t.test('fractional seconds become whole milliseconds', async (t) => {
  t.equal(retryDelayMs([0.05], 1, middle), 50)
  t.equal(retryDelayMs([0.0015], 1, middle), 2)
  t.equal(retryDelayMs([0], 1, middle), 0)
})

t.test('an empty schedule means no delay', async (t) => {
  t.equal(retryDelayMs([], 1, middle), 0)
  t.equal(retryDelayMs([], 5, () => 1), 0)
})

t.test('random 0, 0.5 and 1 give the lower bound, the schedule value and the upper bound', async (t) => {
  const cases: [number[], number, number, number][] = [
    [SCHEDULE, 1, 0, 4000],
    [SCHEDULE, 1, 0.5, 5000],
    [SCHEDULE, 1, 1, 6000],
    [SCHEDULE, 4, 0, 480000],
    [SCHEDULE, 4, 0.5, 600000],
    [SCHEDULE, 4, 1, 720000],
    [SCHEDULE, 9, 0, 480000],
    [SCHEDULE, 9, 1, 720000],
    [[10], 1, 0.25, 9000],
    [[10], 1, 0.75, 11000]
  ]
  for (const [schedule, attemptsMade, random, expected] of cases) {
    t.equal(retryDelayMs(schedule, attemptsMade, () => random), expected, `schedule ${schedule.join(',')}, attempt ${attemptsMade}, random ${random}`)
  }
})

t.test('with Math.random the delay stays within ±20% and is not constant', async (t) => {
  const delays = new Set<number>()
  let outside = 0
  for (let sample = 0; sample < 5000; sample++) {
    const delay = retryDelayMs(SCHEDULE, 2, Math.random)
    if (!Number.isInteger(delay) || delay < 24000 || delay > 36000) outside++
    delays.add(delay)
  }
  t.equal(outside, 0, 'every delay is a whole number of milliseconds between 24000 and 36000')
  t.ok(delays.size > 1000, `the delays spread out (${delays.size} distinct values)`)
  const sorted = [...delays].sort((a, b) => a - b)
  t.ok(sorted[0]! < 26000, 'some delays fall well below the schedule value')
  t.ok(sorted[sorted.length - 1]! > 34000, 'some delays fall well above the schedule value')
})

t.test('Math.random is the default source of jitter', async (t) => {
  const delays = new Set<number>()
  for (let sample = 0; sample < 200; sample++) delays.add(retryDelayMs(SCHEDULE, 3))
  t.ok([...delays].every((delay) => delay >= 96000 && delay <= 144000), 'every delay within ±20% of 120 s')
  t.ok(delays.size > 1, 'the delays differ')
})
