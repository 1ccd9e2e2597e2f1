// Modal dialogs on the platform's <dialog>: Escape closes them, focus
// stays inside while open and returns to where it was afterwards.

import { h } from '../dom.js';

/**
 * Opens a modal dialog; resolves with the value `body` settles it with,
 * or `null` when it is dismissed.
 * @template T
 * @param {string} title
 * @param {(close: (value: T | null) => void) => (Node | string)[]} body
 * @returns {Promise<T | null>}
 */
export function openDialog(title, body) {
  return new Promise((resolve) => {
    const returnFocus = document.activeElement;
    const titleId = `dialog-title-${Math.random().toString(36).slice(2)}`;
    const dialog = h('dialog', { class: 'dialog', 'aria-labelledby': titleId });
    let settled = false;
    /** @param {T | null} value */
    const close = (value) => {
      if (settled) return;
      settled = true;
      dialog.close();
      dialog.remove();
      if (returnFocus instanceof HTMLElement) returnFocus.focus();
      resolve(value);
    };
    dialog.addEventListener('close', () => close(null));
    dialog.append(
      h(
        'div',
        { class: 'dialog-head' },
        h('h2', { id: titleId, text: title }),
        h('button', { type: 'button', class: 'icon-button', 'aria-label': 'Close', onclick: () => close(null) }, '×'),
      ),
      h('div', { class: 'dialog-body' }, ...body(close)),
    );
    document.body.append(dialog);
    dialog.showModal();
  });
}

/**
 * Asks a yes/no question.
 * @param {string} title
 * @param {string} question
 * @param {string} confirmLabel
 * @returns {Promise<boolean>}
 */
export async function confirmDialog(title, question, confirmLabel) {
  const answer = await openDialog(title, (close) => [
    h('p', { text: question }),
    h(
      'div',
      { class: 'dialog-actions' },
      h('button', { type: 'button', class: 'button secondary', onclick: () => close(false) }, 'Cancel'),
      h('button', { type: 'button', class: 'button danger', onclick: () => close(true) }, confirmLabel),
    ),
  ]);
  return answer === true;
}
