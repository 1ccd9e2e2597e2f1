// A small helper to build DOM nodes. Text is always inserted as text
// nodes: nothing here parses HTML, so user text cannot become markup.

/**
 * @typedef {{[key: string]: string | number | boolean | null | undefined | EventListener | Record<string, string>}} Props
 * `class`, `text`, `dataset`, `on<event>` listeners, boolean attributes and plain attributes.
 */

/**
 * Creates an element.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Props} [props]
 * @param {...(Node | string | null | undefined | false | (Node | string | null | undefined | false)[])} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'text') {
      element.textContent = String(value);
    } else if (key === 'dataset' && typeof value === 'object') {
      Object.assign(element.dataset, value);
    } else if (key.startsWith('on') && typeof value === 'function') {
      element.addEventListener(key.slice(2), value);
    } else if (value === true) {
      element.setAttribute(key, '');
    } else {
      element.setAttribute(key, String(value));
    }
  }
  append(element, children);
  return element;
}

/**
 * Appends children (strings become text nodes; empty values are skipped).
 * @param {Node} parent
 * @param {(Node | string | null | undefined | false | (Node | string | null | undefined | false)[])[]} children
 */
export function append(parent, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
  }
}

/**
 * Replaces an element's children.
 * @param {Element} parent
 * @param {...(Node | string | null | undefined | false | (Node | string | null | undefined | false)[])} children
 */
export function replace(parent, ...children) {
  parent.replaceChildren();
  append(parent, children);
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dateFormat = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
const dayFormat = new Intl.DateTimeFormat(undefined, { weekday: 'long', month: 'long', day: 'numeric', year: 'numeric' });

/** @param {number} ms */
export function formatTime(ms) {
  return timeFormat.format(ms);
}

/**
 * A time for a list: the hour today, else the date.
 * @param {number} ms
 */
export function formatShort(ms) {
  return dayKey(ms) === dayKey(Date.now()) ? timeFormat.format(ms) : dateFormat.format(ms);
}

/** @param {number} ms */
export function formatDay(ms) {
  const today = dayKey(Date.now());
  const key = dayKey(ms);
  if (key === today) return 'Today';
  if (key === dayKey(Date.now() - 86_400_000)) return 'Yesterday';
  return dayFormat.format(ms);
}

/** @param {number} ms */
export function dayKey(ms) {
  const date = new Date(ms);
  return `${date.getFullYear()}-${date.getMonth()}-${date.getDate()}`;
}

/**
 * The first letter of a name, for an avatar.
 * @param {string} name
 */
export function initial(name) {
  return (Array.from(name.trim())[0] ?? '?').toUpperCase();
}

/**
 * A stable hue for a name, so each person keeps a colour.
 * @param {string} name
 */
export function hue(name) {
  let hash = 0;
  for (const char of name) hash = (hash * 31 + (char.codePointAt(0) ?? 0)) >>> 0;
  return hash % 360;
}
