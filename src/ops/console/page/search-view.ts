import { api, describeError, type EventView, type SearchResult } from './api.js'
import { facts, h } from './dom.js'
import { fromUtcInput, stateLabel, utc } from './format.js'

/** One state badge per routed subscriber. */
function deliveryBadges(event: EventView): HTMLElement {
  return h('ul', { class: 'badges', 'aria-label': 'Deliveries' },
    ...event.deliveries.map((delivery) => h('li', { class: `badge state-${delivery.state}` }, `${delivery.subscriber}: ${stateLabel(delivery.state)}`)))
}

function objectText(event: EventView): string | undefined {
  return event.object && `${event.object.type} ${event.object.id}`
}

function resultItem(event: EventView): HTMLElement {
  return h('li', { class: 'result' },
    h('h3', {}, h('a', { href: `#/events/${event.id}` }, event.name)),
    h('code', { class: 'id' }, event.id),
    facts([
      ['Object', objectText(event)],
      ['Created', utc(event.createdAt)],
      ['Received', utc(event.receivedAt)],
      ['Source', event.source]
    ]),
    deliveryBadges(event))
}

function summaryOf(result: SearchResult, q: string): string {
  const count = `${result.items.length} event${result.items.length === 1 ? '' : 's'}`
  switch (result.match) {
    case 'event':
      return result.items.length ? `Event ${q}` : `No event ${q} is recorded.`
    case 'object':
      return `${count} about ${q}, newest received first`
    case 'name':
      return `${count} named ${q}, newest received first`
    case 'all':
      return `${count}, newest received first`
  }
}

function input(id: string, label: string, props: Record<string, string>): HTMLElement[] {
  return [h('label', { for: id }, label), h('input', { id, name: id, ...props })]
}

/** Search by event id, Persona object id, event name, and a range of the time received (UTC). */
export function searchView(main: HTMLElement, query: URLSearchParams): () => void {
  const form = h('form', { class: 'search', role: 'search' },
    h('div', { class: 'field wide' }, ...input('q', 'Search', { type: 'search', placeholder: 'evt_…, inq_…, ver_…, or an event name', value: query.get('q') ?? '', autocomplete: 'off' })),
    h('div', { class: 'field' }, ...input('since', 'Received from (UTC)', { type: 'datetime-local', step: '1', value: query.get('since')?.slice(0, 19) ?? '' })),
    h('div', { class: 'field' }, ...input('until', 'Received until (UTC)', { type: 'datetime-local', step: '1', value: query.get('until')?.slice(0, 19) ?? '' })),
    h('button', { type: 'submit' }, 'Search'))
  const summary = h('p', { class: 'summary', role: 'status' }, 'Searching…')
  const results = h('ul', { class: 'results' })
  main.replaceChildren(h('h2', {}, 'Events'), form, summary, results)

  form.addEventListener('submit', (event) => {
    event.preventDefault()
    const data = new FormData(form)
    const next = new URLSearchParams()
    const q = String(data.get('q') ?? '').trim()
    if (q) next.set('q', q)
    for (const bound of ['since', 'until']) {
      const iso = fromUtcInput(String(data.get(bound) ?? ''))
      if (iso) next.set(bound, iso)
    }
    // The search is in the address, so that back, reload and a shared link show the same list.
    const target = `#/?${next}`
    if (location.hash === target) window.dispatchEvent(new HashChangeEvent('hashchange'))
    else location.hash = target
  })

  let current = true
  api.search(query).then((result) => {
    if (!current) return
    summary.textContent = summaryOf(result, query.get('q') ?? '')
    results.replaceChildren(...result.items.map(resultItem))
  }, (error: unknown) => {
    if (!current) return
    summary.textContent = describeError(error)
    summary.classList.add('error')
  })
  return () => {
    current = false
  }
}
