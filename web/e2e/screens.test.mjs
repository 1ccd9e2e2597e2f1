// The main screens on a phone (375 px) and a desktop: screenshots under
// target/web-screenshots for a person to look at, and an accessibility
// scan (axe-core) of each that must find nothing serious or critical.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { AxeBuilder } from '@axe-core/playwright';

import {
  befriend,
  ChatServer,
  expect,
  launchBrowser,
  openChat,
  openPerson,
  register,
  say,
  screenshotPath,
  showTab,
} from './harness.mjs';

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

/**
 * Scans the page as it is now; fails on serious or critical violations.
 * @param {import('playwright-core').Page} page
 * @param {string} screen
 */
async function scan(page, screen) {
  // The scan runs axe's own script in the page, which a strict CSP
  // allows: Playwright evaluates it through the DevTools protocol.
  const results = await new AxeBuilder({ page }).analyze();
  const serious = results.violations.filter((violation) => violation.impact === 'serious' || violation.impact === 'critical');
  assert.deepEqual(
    serious.map((violation) => `${violation.id}: ${violation.help} (${violation.nodes.map((node) => node.target.join(' ')).join(', ')})`),
    [],
    `accessibility violations on ${screen}`,
  );
}

/**
 * @param {import('playwright-core').Page} page
 * @param {string} name
 */
async function shoot(page, name) {
  // Let fonts and the last render settle.
  await page.waitForTimeout(200);
  await page.screenshot({ path: screenshotPath(name) });
  // Nothing wider than the screen: no sideways scrolling, on a phone either.
  const overflow = await page.evaluate(() =>
    [...document.querySelectorAll('body *')]
      .filter((element) => element.getBoundingClientRect().right > window.innerWidth + 1)
      .map((element) => element.className)
      .slice(0, 5),
  );
  assert.deepEqual(overflow, [], `wider than the screen in ${name}`);
}

for (const [label, viewport] of /** @type {const} */ ([
  ['desktop', { width: 1200, height: 760 }],
  ['phone', { width: 375, height: 740 }],
])) {
  test(`the main screens on a ${label}, scanned for accessibility`, async () => {
    const alice = await openPerson(browser, server, { viewport });
    const bob = await openPerson(browser, server, { viewport });
    // Plain names, so the screenshots read like the real thing.
    const names = label === 'desktop' ? { alice: 'alice', bob: 'bob' } : { alice: 'amara', bob: 'ben' };

    await expect(alice.page.getByRole('button', { name: 'Create account' })).toBeVisible();
    await shoot(alice.page, `${label}-1-sign-in.png`);
    await scan(alice.page, `the sign-in screen (${label})`);

    await register(alice.page, names.alice);
    await register(bob.page, names.bob);
    await befriend(alice.page, bob.page, names.alice, names.bob);
    await showTab(bob.page, 'Groups');
    await bob.page.getByLabel('Group name').fill('Weekend hike');
    await bob.page.getByRole('button', { name: 'Create group' }).click();
    await expect(bob.page.locator('.chat-title')).toHaveText('Weekend hike');
    await say(bob.page, 'Who is in for Saturday?');

    await openChat(alice.page, names.bob);
    await say(alice.page, 'Hi! Are we still on for the hike on Saturday?');
    await openChat(bob.page, names.alice);
    await say(bob.page, 'Yes! Meet at the station at 8:00.\nBring water and something warm — it gets windy at the top.');
    await say(alice.page, 'Perfect, see you there!');
    await say(alice.page, 'A long line that has to wrap: ' + 'supercalifragilisticexpialidocious'.repeat(4));
    await expect(bob.page.locator('.message.theirs .body').last()).toContainText('supercalifragilistic');
    await expect(alice.page.locator('.message.theirs .body')).toHaveCount(1);
    await shoot(alice.page, `${label}-2-conversation.png`);
    await scan(alice.page, `a conversation (${label})`);
    await alice.page.emulateMedia({ colorScheme: 'dark' });
    await shoot(alice.page, `${label}-2-conversation-dark.png`);
    await scan(alice.page, `a conversation in the dark (${label})`);
    await alice.page.emulateMedia({ colorScheme: 'light' });

    await bob.page.getByLabel('Message', { exact: true }).press('Escape');
    await showTab(bob.page, 'Chats');
    await expect(bob.page.locator('.conversation')).toHaveCount(2);
    await shoot(bob.page, `${label}-3-conversation-list.png`);
    await scan(bob.page, `the conversation list (${label})`);

    await showTab(alice.page, 'Friends');
    await expect(alice.page.locator('.friend')).toHaveCount(1);
    await shoot(alice.page, `${label}-4-friends.png`);
    await scan(alice.page, `the friends (${label})`);

    await showTab(bob.page, 'Groups');
    await shoot(bob.page, `${label}-5-groups.png`);
    await scan(bob.page, `the groups (${label})`);

    await openChat(bob.page, 'Weekend hike');
    await bob.page.getByRole('button', { name: 'Members' }).click();
    await expect(bob.page.getByRole('dialog').locator('.member')).toHaveCount(1);
    await shoot(bob.page, `${label}-6-members.png`);
    await scan(bob.page, `the members dialog (${label})`);

    for (const person of [alice, bob]) {
      assert.deepEqual(person.dialogs, []);
      assert.deepEqual(person.errors, []);
      await person.context.close();
    }
  });
}
