import { api, describeError, type BackfillJob } from './api.js'
import { confirmable, statusLine } from './confirm.js'
import { facts, fill, h } from './dom.js'
import { utc } from './format.js'

const POLL_MS = 500

/** Reads a backfill's record until it has finished, showing its progress meanwhile. */
async function finished(job: BackfillJob, current: () => boolean, progress?: (job: BackfillJob) => void): Promise<BackfillJob> {
  let latest = job
  while (latest.status === 'running' && current()) {
    progress?.(latest)
    await new Promise((resolve) => window.setTimeout(resolve, POLL_MS))
    latest = await api.backfillJob(job.id)
  }
  return latest
}

function counts(job: BackfillJob): HTMLDListElement {
  return facts([
    ['From', utc(job.since)],
    ['Until', utc(job.until)],
    [job.dryRun ? 'Would be queued' : 'Queued', `${job.dryRun ? job.wouldQueue : job.queued}`],
    ['Already recorded', `${job.skipped}`],
    ['Not Persona events', `${job.invalid}`],
    ['Pages read', `${job.pages}`],
    ['Newest event', job.newestCreatedAt && utc(job.newestCreatedAt)]
  ])
}

/** What a dry run found missing: metadata only. */
function wouldQueue(job: BackfillJob): HTMLElement {
  const listed = job.wouldQueueEvents ?? []
  return h('div', { class: 'would-queue' },
    h('table', {},
      h('caption', {}, 'Events the backfill would queue'),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Event'), h('th', { scope: 'col' }, 'Name'), h('th', { scope: 'col' }, 'Created'), h('th', { scope: 'col' }, 'Subscribers'))),
      h('tbody', {}, ...listed.map((event) => h('tr', {},
        h('td', {}, h('code', {}, event.id)), h('td', {}, event.name), h('td', {}, utc(event.createdAt)), h('td', {}, event.subscribers.join(', ') || 'none'))))),
    job.wouldQueue > listed.length && h('p', { class: 'muted' }, `and ${job.wouldQueue - listed.length} more`))
}

/**
 * Backfill from Persona's Events API: a dry run first, which shows what would be queued; the
 * backfill itself is then offered for exactly the range the dry run looked at.
 */
export function backfillView(main: HTMLElement): () => void {
  let current = true
  const since = h('input', { id: 'backfill-since', name: 'since', required: true, placeholder: '2h, or 2026-03-02T06:00:00Z' })
  const until = h('input', { id: 'backfill-until', name: 'until', placeholder: 'now' })
  const run = h('button', { type: 'submit' }, 'Dry run')
  const form = h('form', { class: 'backfill' },
    h('div', { class: 'field' }, h('label', { for: since.id }, 'Since (a time or a duration back)'), since),
    h('div', { class: 'field' }, h('label', { for: until.id }, 'Until (optional)'), until),
    run)
  const result = h('section', { class: 'backfill-result', 'aria-live': 'polite', 'aria-label': 'Backfill result' })
  main.replaceChildren(h('h2', {}, 'Backfill'),
    h('p', {}, 'Fetches the events Persona lists (it keeps 30 days) and queues those the relay never recorded, as if their webhooks had arrived. A dry run comes first and shows what would be queued.'),
    form, result)

  const start = (dryRun: BackfillJob) => {
    const status = statusLine()
    const control = confirmable('Start backfill', () => `Queue the ${dryRun.wouldQueue} events Persona lists from ${utc(dryRun.since)} to ${utc(dryRun.until)} that the relay has not recorded?`, async () => {
      const job = await finished(await api.backfill({ since: dryRun.since, until: dryRun.until, dryRun: false }), () => current, (running) => {
        status.textContent = `Backfill running: ${running.queued} queued so far…`
      })
      fill(result, h('h3', {}, job.status === 'succeeded' ? 'Backfill finished' : 'Backfill failed'), counts(job), status)
      if (job.error) throw new Error(`${job.error.message} (${job.error.code})`)
      return `${job.queued} event${job.queued === 1 ? '' : 's'} queued.`
    }, status)
    return [control.element, status]
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault()
    run.disabled = true
    fill(result, h('p', { role: 'status' }, 'Dry run running…'))
    try {
      const job = await finished(await api.backfill({ since: since.value.trim(), ...(until.value.trim() ? { until: until.value.trim() } : {}), dryRun: true }), () => current)
      if (!current) return
      fill(result, h('h3', {}, 'Dry run'), counts(job),
        job.error && h('p', { class: 'error' }, `${job.error.message} (${job.error.code})`),
        ...(job.status !== 'succeeded' ? [] : job.wouldQueue > 0 ? [wouldQueue(job), ...start(job)] : [h('p', {}, 'Nothing is missing: there is nothing to queue.')]))
    } catch (error) {
      fill(result, h('p', { class: 'error', role: 'alert' }, describeError(error)))
    } finally {
      run.disabled = false
    }
  })
  return () => {
    current = false
  }
}
