import type { Activity } from './api.js'
import { svg } from './dom.js'
import { clock } from './format.js'

const WIDTH = 600
const HEIGHT = 120
const LEFT = 30
const BOTTOM = 16
const TOP = 6

/** Totals over the hour, for the caption and the chart's accessible name. */
export function totals(activity: Activity): { delivered: number; failed: number } {
  return activity.minutes.reduce((sum, minute) => ({ delivered: sum.delivered + minute.delivered, failed: sum.failed + minute.failed }), { delivered: 0, failed: 0 })
}

/**
 * Delivered and failed attempts per minute over the last hour, as stacked bars (failed on top),
 * drawn here: no charting library, nothing loaded from elsewhere. Each minute with attempts is a
 * group whose title says its counts; colours come from the stylesheet (the CSP allows no inline style).
 */
export function activityChart(activity: Activity): SVGSVGElement {
  const { delivered, failed } = totals(activity)
  const peak = Math.max(1, ...activity.minutes.map((minute) => minute.delivered + minute.failed))
  const slot = (WIDTH - LEFT) / Math.max(activity.minutes.length, 1)
  const plot = HEIGHT - BOTTOM - TOP
  const y = (count: number) => (count / peak) * plot
  const bars = activity.minutes.flatMap((minute, index) => {
    if (minute.delivered + minute.failed === 0) return []
    const x = LEFT + index * slot + slot * 0.15
    const base = HEIGHT - BOTTOM
    const label = `${clock(minute.at)} UTC: ${minute.delivered} delivered, ${minute.failed} failed`
    return [svg('g', { class: 'minute', 'data-at': minute.at },
      svg('title', {}, label),
      svg('rect', { class: 'bar-delivered', x, y: base - y(minute.delivered), width: slot * 0.7, height: y(minute.delivered) }),
      svg('rect', { class: 'bar-failed', x, y: base - y(minute.delivered) - y(minute.failed), width: slot * 0.7, height: y(minute.failed) }))]
  })
  return svg('svg', {
    class: 'chart',
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    role: 'img',
    'aria-label': `${activity.subscriber}: ${delivered} delivered and ${failed} failed attempts in the last 60 minutes`
  },
  svg('line', { class: 'axis', x1: LEFT, y1: HEIGHT - BOTTOM, x2: WIDTH, y2: HEIGHT - BOTTOM }),
  svg('line', { class: 'grid', x1: LEFT, y1: TOP, x2: WIDTH, y2: TOP }),
  svg('text', { class: 'tick', x: LEFT - 4, y: TOP + 4, 'text-anchor': 'end' }, peak),
  svg('text', { class: 'tick', x: LEFT - 4, y: HEIGHT - BOTTOM, 'text-anchor': 'end' }, 0),
  svg('text', { class: 'tick', x: LEFT, y: HEIGHT - 2 }, '60 min ago'),
  svg('text', { class: 'tick', x: WIDTH, y: HEIGHT - 2, 'text-anchor': 'end' }, 'now'),
  ...bars)
}
