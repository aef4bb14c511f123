import { api, describeError, type Activity, type Subscriber } from './api.js'
import { activityChart, totals } from './chart.js'
import { confirmable, statusLine, type Confirmable } from './confirm.js'
import { facts, fill, h, idOf } from './dom.js'
import { age, fromUtcInput, subscriberState, utc } from './format.js'

const REFRESH_MS = 3000

function settings(subscriber: Subscriber): HTMLDListElement {
  return facts([
    ['Endpoint', h('code', {}, subscriber.url)],
    ['Patterns', subscriber.patterns.join(', ')],
    ['Filter', subscriber.filter && h('code', {}, subscriber.filter)],
    ['Ordering', subscriber.ordering && `by object, window ${subscriber.ordering.windowMs} ms, stale events: ${subscriber.ordering.stale}`],
    ['Rate limit', subscriber.rateLimit]
  ], 'facts settings')
}

function backlog(subscriber: Subscriber): HTMLDListElement {
  const { counts } = subscriber
  return facts([
    ['Waiting', `${counts.pending}`],
    ['Oldest waiting', counts.pending > 0 ? age(subscriber.oldestWaitingMs) : 'none waits'],
    ['Retry scheduled', `${counts.delayed}`],
    ['Sending', `${counts.active}`],
    ['Failed', `${counts.failed}`],
    ['Failures in a row', `${subscriber.consecutiveFailures}`],
    ['Paused since', subscriber.pausedSince && utc(subscriber.pausedSince)]
  ], 'facts backlog')
}

/** Replays every dead letter of the subscriber that failed within the range (both ends optional). */
function bulkRetry(name: string): HTMLElement {
  const since = h('input', { id: idOf('retry-since', name), type: 'datetime-local', step: '1' })
  const until = h('input', { id: idOf('retry-until', name), type: 'datetime-local', step: '1' })
  const status = statusLine()
  const range = () => ({ since: fromUtcInput(since.value), until: fromUtcInput(until.value) })
  const control = confirmable('Retry failed', () => {
    const { since: from, until: to } = range()
    return `Send ${name} again every delivery that failed ${from ? `from ${from}` : 'from the start'} ${to ? `until ${to}` : 'until now'}?`
  }, async () => {
    const { retried } = await api.retryFailed({ subscriber: name, ...range() })
    return `${retried} failed deliver${retried === 1 ? 'y' : 'ies'} queued again.`
  }, status)
  return h('fieldset', { class: 'bulk-retry' },
    h('legend', {}, `Retry failed deliveries of ${name}`),
    h('div', { class: 'row' },
      h('div', { class: 'field' }, h('label', { for: since.id }, 'Failed from (UTC)'), since),
      h('div', { class: 'field' }, h('label', { for: until.id }, 'Failed until (UTC)'), until),
      control.element),
    status)
}

/** One subscriber: its settings, and what changes (state, backlog, chart) updated in place. */
function subscriberCard(name: string) {
  const heading = idOf('subscriber', name)
  const badge = h('span', { class: 'badge' })
  const actions = h('div', { class: 'actions' })
  const status = statusLine()
  const details = h('div', { class: 'subscriber-details' })
  const chart = h('figure', { class: 'activity' })
  let toggle: Confirmable | undefined
  let shownState = ''
  let lastActivity: Activity | undefined
  const element = h('section', { class: 'subscriber', 'aria-labelledby': heading },
    h('header', {}, h('h3', { id: heading }, name), badge, actions), status, details, chart, bulkRetry(name))

  /** A pause or a resumption answers with the subscriber alone: the chart stays as it was. */
  const update = (subscriber: Subscriber, activity = lastActivity) => {
    const state = subscriberState(subscriber)
    badge.className = `badge ${state.className}`
    badge.textContent = state.label
    fill(details, settings(subscriber), backlog(subscriber))
    if (activity && activity !== lastActivity) {
      lastActivity = activity
      const { delivered, failed } = totals(activity)
      fill(chart, activityChart(activity), h('figcaption', {}, `Attempts per minute, last 60 minutes: ${delivered} delivered, ${failed} failed`))
    }
    if (toggle?.asking() || shownState === subscriber.state) return
    shownState = subscriber.state
    const pausing = subscriber.state === 'active'
    toggle = confirmable(pausing ? 'Pause' : 'Resume', () => pausing
      ? `Pause ${name}? Its deliveries wait until it is resumed.`
      : `Resume ${name}? Waiting deliveries are sent${subscriber.pauseReason === 'breaker' ? ' and the circuit breaker is closed' : ''}.`, async () => {
      update(await (pausing ? api.pause(name) : api.resume(name)))
      return `${name} ${pausing ? 'paused' : 'resumed'}.`
    }, status)
    actions.replaceChildren(toggle.element)
  }
  return { element, update }
}

/** Every subscriber with its state, backlog and last hour; kept up to date while shown. */
export function subscribersView(main: HTMLElement): () => void {
  const status = h('p', { class: 'summary', role: 'status' }, 'Loading…')
  const list = h('div', { class: 'subscribers' })
  main.replaceChildren(h('h2', {}, 'Subscribers'), status, list)
  const cards = new Map<string, ReturnType<typeof subscriberCard>>()
  let timer: number | undefined
  let current = true

  const refresh = async () => {
    try {
      const { subscribers } = await api.subscribers()
      const activities = await Promise.all(subscribers.map((subscriber) => api.activity(subscriber.name)))
      if (!current) return
      status.textContent = subscribers.length ? `${subscribers.length} subscriber${subscribers.length === 1 ? '' : 's'}; updated ${new Date().toISOString().slice(11, 19)} UTC` : 'No subscriber is configured.'
      status.classList.remove('error')
      subscribers.forEach((subscriber, index) => {
        let card = cards.get(subscriber.name)
        if (!card) {
          card = subscriberCard(subscriber.name)
          cards.set(subscriber.name, card)
          list.append(card.element)
        }
        card.update(subscriber, activities[index]!)
      })
    } catch (error) {
      if (!current) return
      status.textContent = describeError(error)
      status.classList.add('error')
    }
    if (current) timer = window.setTimeout(refresh, REFRESH_MS)
  }
  void refresh()
  return () => {
    current = false
    window.clearTimeout(timer)
  }
}
