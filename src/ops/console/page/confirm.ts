import { describeError } from './api.js'
import { h } from './dom.js'

export interface Confirmable {
  element: HTMLElement
  /** True while the question is shown: a refresh of the page then leaves the control alone. */
  asking(): boolean
}

/** A line that announces what an action came to; it outlives the control, which a refresh may replace. */
export function statusLine(): HTMLParagraphElement {
  return h('p', { class: 'status', role: 'status' })
}

/**
 * A button whose action runs only after a second, explicit step in the page: the question, with a
 * Confirm and a Cancel button, in place of the button. What the action came to (the text it
 * returns, or the API's error) is announced in `status`, which stays when a refresh replaces the
 * control with another.
 */
export function confirmable(label: string, question: () => string, action: () => Promise<string>, status: HTMLElement): Confirmable {
  const start = h('button', { type: 'button' }, label)
  const text = h('p', { class: 'question' })
  const yes = h('button', { type: 'button', class: 'confirm' }, `Confirm ${label.toLowerCase()}`)
  const no = h('button', { type: 'button', class: 'secondary' }, 'Cancel')
  const step = h('div', { class: 'confirm-step', role: 'group', 'aria-label': `Confirm ${label.toLowerCase()}`, hidden: true }, text, yes, no)
  const show = (asking: boolean) => {
    start.hidden = asking
    step.hidden = !asking
  }
  start.addEventListener('click', () => {
    text.textContent = question()
    status.textContent = ''
    show(true)
    yes.focus()
  })
  no.addEventListener('click', () => {
    show(false)
    start.focus()
  })
  yes.addEventListener('click', async () => {
    show(false)
    start.disabled = true
    status.classList.remove('error')
    status.textContent = 'Working…'
    try {
      status.textContent = await action()
    } catch (error) {
      status.textContent = describeError(error)
      status.classList.add('error')
    } finally {
      start.disabled = false
    }
  })
  return { element: h('div', { class: 'confirmable' }, start, step), asking: () => !step.hidden }
}
