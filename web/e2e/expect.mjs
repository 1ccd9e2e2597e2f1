// Waiting assertions for the browser tests (playwright-core has no test
// runner): each polls until the condition holds or a timeout passes, then
// fails with the last value seen.

import assert from 'node:assert/strict';

const TIMEOUT_MS = Number(process.env.CHATD_E2E_TIMEOUT_MS ?? 15_000);

/**
 * Polls `read` until `check` accepts its value.
 * @template T
 * @param {() => Promise<T>} read
 * @param {(value: T) => boolean} check
 * @param {string} what
 * @param {number} [timeout]
 */
export async function poll(read, check, what, timeout = TIMEOUT_MS) {
  const deadline = Date.now() + timeout;
  /** @type {T | string} */
  let last = '(never read)';
  for (;;) {
    try {
      last = await read();
      if (check(last)) return last;
    } catch (error) {
      last = `(error: ${error instanceof Error ? error.message.split('\n')[0] : error})`;
    }
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}; last seen: ${JSON.stringify(last)}`);
    await new Promise((done) => setTimeout(done, 100));
  }
}

/**
 * @param {string | RegExp} expected
 * @param {string} actual
 */
function matches(expected, actual) {
  return typeof expected === 'string' ? actual.trim() === expected : expected.test(actual);
}

/** @param {import('playwright-core').Locator} locator */
async function allText(locator) {
  return (await locator.allTextContents()).join(' ');
}

/**
 * @param {import('playwright-core').Locator} locator
 */
export function expect(locator) {
  const name = locator.toString();
  return {
    /** @param {string | RegExp} text */
    toHaveText: (text) => poll(() => allText(locator), (value) => matches(text, value), `${name} to have text ${text}`),
    /** @param {string} text */
    toContainText: (text) => poll(() => allText(locator), (value) => value.includes(text), `${name} to contain ${text}`),
    /** @param {string} text */
    notToContainText: (text) => poll(() => allText(locator), (value) => !value.includes(text), `${name} not to contain ${text}`),
    toBeVisible: () => poll(() => locator.first().isVisible(), Boolean, `${name} to be visible`),
    toBeHidden: () => poll(() => locator.first().isVisible(), (visible) => !visible, `${name} to be hidden`),
    /** @param {number} count */
    toHaveCount: (count) => poll(() => locator.count(), (value) => value === count, `${name} to count ${count}`),
  };
}

/**
 * Waits for the page's title.
 * @param {import('playwright-core').Page} page
 * @param {string} title
 */
export function expectTitle(page, title) {
  return poll(() => page.title(), (value) => value === title, `title ${title}`);
}
