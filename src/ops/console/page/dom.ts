/** What an element may hold: nodes, text, or nothing (false, null and undefined are left out). */
export type Child = Node | string | number | false | null | undefined

/** Attributes to set (true sets an empty one, false and undefined none) and `on…` listeners. */
export type Props = Record<string, string | number | boolean | undefined | ((event: Event) => void)>

function assemble<E extends Element>(element: E, props: Props, children: Child[]): E {
  for (const [name, value] of Object.entries(props)) {
    if (typeof value === 'function') element.addEventListener(name.slice(2), value)
    else if (value === true) element.setAttribute(name, '')
    else if (value !== false && value !== undefined) element.setAttribute(name, String(value))
  }
  // Text always goes in as text: nothing from the API is ever parsed as markup.
  element.append(...children.filter((child) => child !== false && child !== null && child !== undefined).map((child) => (typeof child === 'number' ? String(child) : child)))
  return element
}

/** Replaces what an element holds. */
export function fill<E extends Element>(element: E, ...children: Child[]): E {
  element.replaceChildren()
  return assemble(element, {}, children)
}

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, props: Props = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  return assemble(document.createElement(tag), props, children)
}

export function svg<K extends keyof SVGElementTagNameMap>(tag: K, props: Props = {}, ...children: Child[]): SVGElementTagNameMap[K] {
  return assemble(document.createElementNS('http://www.w3.org/2000/svg', tag), props, children)
}

/** A definition list from label and value pairs; pairs without a value are left out. */
export function facts(pairs: [string, Child][], className = 'facts'): HTMLDListElement {
  const shown = pairs.filter(([, value]) => value !== undefined && value !== null && value !== false && value !== '')
  return h('dl', { class: className }, ...shown.flatMap(([label, value]) => [h('dt', {}, label), h('dd', {}, value)]))
}

/** An element id from free text (subscriber names, event ids are already safe; this keeps them so). */
export function idOf(...parts: string[]): string {
  return parts.join('-').replace(/[^A-Za-z0-9_-]/g, '_')
}
