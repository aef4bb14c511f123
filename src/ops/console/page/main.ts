import { backfillView } from './backfill-view.js'
import { eventView } from './event-view.js'
import { searchView } from './search-view.js'
import { subscribersView } from './subscribers-view.js'

/** A view draws itself into the main element and returns what stops it (timers, late answers). */
type View = (main: HTMLElement, path: string[], query: URLSearchParams) => () => void

const VIEWS: Record<string, View> = {
  '': (main, _path, query) => searchView(main, query),
  events: (main, [id]) => eventView(main, id ?? ''),
  subscribers: (main) => subscribersView(main),
  backfill: (main) => backfillView(main)
}

const main = document.getElementById('view')!
let stop = () => {}

/** The view is in the address after `#/`: back, reload and a shared link show the same page. */
function route(): void {
  stop()
  const [path = '', search = ''] = location.hash.replace(/^#\/?/, '').split('?', 2)
  const [name = '', ...rest] = path.split('/').map(decodeURIComponent)
  const view = VIEWS[name] ?? VIEWS['']!
  for (const link of document.querySelectorAll<HTMLAnchorElement>('nav.primary a')) {
    if (link.dataset.view === (VIEWS[name] ? name : '')) link.setAttribute('aria-current', 'page')
    else link.removeAttribute('aria-current')
  }
  stop = view(main, rest, new URLSearchParams(search))
  main.focus({ preventScroll: true })
}

window.addEventListener('hashchange', route)
route()
