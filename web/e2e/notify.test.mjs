// A desktop notification for a message that arrives while the tab is
// hidden, once the person allowed notifications; none while it is shown.
// The browser's Notification and visibility are stand-ins here (headless
// Chromium shows no notifications and its tabs are never hidden).

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { befriend, ChatServer, expect, launchBrowser, openChat, openPerson, register, say, uniqueName } from './harness.mjs';
import { expectTitle, poll } from './expect.mjs';

/** @type {ChatServer} */
let server;
/** @type {import('playwright-core').Browser} */
let browser;

before(async () => {
  server = await ChatServer.start();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.close();
});

test('a message to a hidden tab raises a notification, after permission', async () => {
  const carol = await openPerson(browser, server);
  const dave = await openPerson(browser, server);
  await carol.context.addInitScript(() => {
    const state = /** @type {any} */ (window);
    state.shown = [];
    state.tabHidden = false;
    Object.defineProperty(document, 'hidden', { get: () => state.tabHidden });
    class StandInNotification extends EventTarget {
      static permission = 'default';
      static async requestPermission() {
        StandInNotification.permission = 'granted';
        return 'granted';
      }
      /**
       * @param {string} title
       * @param {{body?: string}} options
       */
      constructor(title, options) {
        super();
        state.shown.push({ title, body: options.body });
      }
    }
    state.Notification = StandInNotification;
  });
  await carol.page.reload();
  const names = { carol: uniqueName('carol'), dave: uniqueName('dave') };
  await register(carol.page, names.carol);
  await register(dave.page, names.dave);
  await befriend(carol.page, dave.page, names.carol, names.dave);
  await openChat(dave.page, names.carol);

  // Not allowed yet: nothing is shown, and the button to allow is there.
  await carol.page.evaluate(() => {
    /** @type {any} */ (window).tabHidden = true;
  });
  await say(dave.page, 'before permission');
  await expectTitle(carol.page, '(1) chatd');
  assert.deepEqual(await carol.page.evaluate(() => /** @type {any} */ (window).shown), []);

  await carol.page.getByRole('button', { name: 'Notifications' }).click();
  await expect(carol.page.getByRole('button', { name: 'Notifications' })).toBeHidden();
  await say(dave.page, 'after permission');
  const shown = await poll(
    () => carol.page.evaluate(() => /** @type {any} */ (window).shown),
    (/** @type {any[]} */ list) => list.length > 0,
    'a notification',
  );
  assert.deepEqual(shown, [{ title: names.dave, body: 'after permission' }]);
  await expectTitle(carol.page, '(2) chatd');

  // A visible tab gets no notification.
  await carol.page.evaluate(() => {
    /** @type {any} */ (window).tabHidden = false;
  });
  await say(dave.page, 'while looking');
  await expectTitle(carol.page, '(3) chatd');
  await carol.page.waitForTimeout(300);
  assert.equal((await carol.page.evaluate(() => /** @type {any} */ (window).shown)).length, 1);
});
