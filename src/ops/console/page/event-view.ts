import { api, describeError, type AttemptRecord, type DeliveryView, type EventView } from './api.js'
import { confirmable, statusLine, type Confirmable } from './confirm.js'
import { facts, fill, h, idOf } from './dom.js'
import { duration, moving, outcomeOf, reasonOf, stateLabel, utc } from './format.js'

const REFRESH_MS = 1500

function attemptItem(attempt: AttemptRecord): HTMLElement {
  return h('li', { class: `attempt outcome-${attempt.outcome}` },
    h('span', { class: 'attempt-number' }, `Attempt ${attempt.attempt}`),
    h('time', { datetime: attempt.at }, utc(attempt.at)),
    h('span', { class: 'attempt-duration' }, duration(attempt.durationMs)),
    h('strong', { class: 'attempt-outcome' }, outcomeOf(attempt)),
    attempt.probe && h('span', { class: 'tag' }, 'breaker probe'),
    attempt.response !== undefined && attempt.response !== '' && h('code', { class: 'excerpt', title: 'The start of the subscriber\'s answer' }, attempt.response))
}

/**
 * One subscriber's delivery: state, why, the attempts as a timeline, and Retry when it failed;
 * `retried` is told when a retry was queued, so that the page follows the delivery again.
 */
function deliveryCard(initial: DeliveryView, retried: () => void) {
  const heading = idOf('delivery', initial.subscriber)
  const body = h('div', { class: 'delivery-body' })
  const actions = h('div', { class: 'actions' })
  const status = statusLine()
  let retry: Confirmable | undefined
  const element = h('section', { class: 'delivery', 'aria-labelledby': heading }, h('h4', { id: heading }, initial.subscriber), body, actions, status)

  const update = (delivery: DeliveryView) => {
    fill(body,
      h('p', { class: 'delivery-state' }, h('span', { class: `badge state-${delivery.state}` }, stateLabel(delivery.state)), ' ', h('span', { class: 'why' }, reasonOf(delivery))),
      delivery.failedReason !== undefined && h('p', { class: 'failed-reason' }, delivery.failedReason),
      facts([
        ['Attempts', delivery.maxAttempts ? `${delivery.attemptsMade} of ${delivery.maxAttempts}` : undefined],
        ['Queued', utc(delivery.queuedAt)],
        ['Finished', delivery.finishedAt && utc(delivery.finishedAt)]
      ]),
      delivery.attempts.length > 0
        ? h('ol', { class: 'timeline', 'aria-label': `Attempts to ${delivery.subscriber}` }, ...delivery.attempts.map(attemptItem))
        : h('p', { class: 'muted' }, 'No attempt made.'))
    // The button is made again only when it comes or goes: one the operator is using stays.
    if ((delivery.state === 'failed') === (retry !== undefined)) return
    retry = delivery.state === 'failed'
      ? confirmable('Retry', () => `Send ${delivery.subscriber} this event again? It gets a fresh budget of ${delivery.maxAttempts} attempts.`, async () => {
        await api.retry(delivery.id)
        retried()
        return `Queued again for ${delivery.subscriber}.`
      }, status)
      : undefined
    actions.replaceChildren(...(retry ? [retry.element] : []))
  }
  update(initial)
  return { element, update }
}

/** An event's metadata (never its body) and each routed subscriber's delivery of it. */
export function eventView(main: HTMLElement, eventId: string): () => void {
  const status = h('p', { class: 'summary', role: 'status' }, 'Loading…')
  main.replaceChildren(h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/' }, 'Events'), ' › ', h('code', {}, eventId)), status)
  const cards = new Map<string, ReturnType<typeof deliveryCard>>()
  let timer: number | undefined
  let current = true

  const render = (event: EventView) => {
    status.remove()
    const list = h('div', { class: 'deliveries' })
    for (const delivery of event.deliveries) {
      const card = deliveryCard(delivery, () => {
        window.clearTimeout(timer)
        void refresh()
      })
      cards.set(delivery.subscriber, card)
      list.append(card.element)
    }
    main.append(
      h('h2', {}, event.name),
      facts([
        ['Event', h('code', {}, event.id)],
        ['Object', event.object && h('a', { href: `#/?q=${encodeURIComponent(event.object.id)}` }, `${event.object.type} ${event.object.id}`)],
        ['Created (Persona)', utc(event.createdAt)],
        ['Received', utc(event.receivedAt)],
        ['Source', event.source],
        ['Body', event.bodyRedacted && 'removed: Persona redacted the object']
      ]),
      h('h3', {}, 'Deliveries'),
      event.deliveries.length ? list : h('p', { class: 'muted' }, 'Routed to no subscriber.'))
  }

  // While a delivery can still change by itself, the page follows it.
  const follow = (event: EventView) => {
    if (current && event.deliveries.some((delivery) => moving(delivery.state))) timer = window.setTimeout(refresh, REFRESH_MS)
  }
  const refresh = async () => {
    timer = undefined
    try {
      const event = await api.event(eventId)
      if (!current) return
      for (const delivery of event.deliveries) cards.get(delivery.subscriber)?.update(delivery)
      follow(event)
    } catch {
      if (current) timer = window.setTimeout(refresh, REFRESH_MS)
    }
  }

  api.event(eventId).then((event) => {
    if (!current) return
    render(event)
    follow(event)
  }, (error: unknown) => {
    status.textContent = describeError(error)
    status.classList.add('error')
  })
  return () => {
    current = false
    window.clearTimeout(timer)
  }
}
