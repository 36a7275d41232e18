// DOM from data, by text nodes only: device ids, twins, telemetry and method payloads come from
// devices and are hostile, so nothing here parses markup (the page's Trusted Types policy would
// refuse it anyway).

/**
 * `h('td', { class: 'id' }, text, child)`: strings and numbers become text nodes; `on<event>` props
 * take functions only; other props become attributes (false, null and undefined are left out).
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag)
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue
    if (k.startsWith('on')) {
      if (typeof v === 'function') el.addEventListener(k.slice(2), v)
    } else if (k === 'value') el.value = String(v)
    else el.setAttribute(k, v === true ? '' : String(v))
  }
  append(el, children)
  return el
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue
    el.append(c instanceof Node ? c : document.createTextNode(String(c)))
  }
  return el
}

/** Replaces an element's content. */
export function fill(el, ...children) {
  el.replaceChildren()
  return append(el, children)
}

/** A status line that says what happened: `ok`, `error` or plain. */
export function say(el, text, kind = '') {
  el.className = `status ${kind}`.trim()
  el.textContent = text
}

/** JSON for people; a value JSON cannot hold is shown as text. */
export function pretty(v) {
  if (v === undefined) return ''
  try { return JSON.stringify(v, null, 2) } catch { return String(v) }
}

/** `0001-01-01T00:00:00` is how the hub says "never". */
export function when(iso) {
  if (!iso || iso.startsWith('0001-')) return 'never'
  const d = new Date(iso)
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString()
}

/** A labelled form field. */
export function field(label, input) {
  return h('label', { class: 'field' }, h('span', {}, label), input)
}
