// One person in two tabs, each its own session: what one tab sends shows
// in the other as one's own, reading in one clears the count in the
// other, and signing out of one leaves the other signed in. Then the same
// app used with the keyboard alone.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { befriend, ChatServer, expect, launchBrowser, openChat, openPerson, PASSWORD, register, say, serverHasConversations, shownBodies, uniqueName } from './harness.mjs';
import { expectTitle } from './expect.mjs';

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

test('two tabs of one person stay in step', async () => {
  const names = { erin: uniqueName('erin'), finn: uniqueName('finn') };
  const erin = await openPerson(browser, server);
  const finn = await openPerson(browser, server);
  await register(erin.page, names.erin);
  await register(finn.page, names.finn);
  await befriend(erin.page, finn.page, names.erin, names.finn);

  // A second tab in the same browser signs in on its own.
  const second = await erin.context.newPage();
  await second.goto(server.url);
  await second.getByLabel('Name').fill(names.erin);
  await second.getByLabel('Password').fill(PASSWORD);
  await second.locator('form.signin-form button[type=submit]').click();
  await expect(second.locator('.status')).toHaveText('Connected');

  await openChat(erin.page, names.finn);
  await say(erin.page, 'from the first tab');
  await openChat(second, names.finn);
  await expect(second.locator('.message.mine .body')).toHaveText('from the first tab');

  // Finn writes while the second tab looks elsewhere.
  await second.getByLabel('Message', { exact: true }).press('Escape');
  await openChat(finn.page, names.erin);
  await say(finn.page, 'hello, both tabs');
  await expect(erin.page.locator('.message.theirs .body')).toHaveText('hello, both tabs');
  await expect(second.locator('.conversation-preview')).toHaveText('hello, both tabs');
  if (await serverHasConversations(second)) {
    // The first tab has the conversation open and read it; the second hears so.
    await expectTitle(second, 'chatd');
    await expect(second.locator('.conversation .badge')).toHaveCount(0);
  }
  await openChat(second, names.finn);
  assert.deepEqual(await shownBodies(second), ['from the first tab', 'hello, both tabs']);

  await second.getByRole('button', { name: 'Sign out' }).click();
  await expect(second.getByRole('button', { name: 'Create account' })).toBeVisible();
  await say(finn.page, 'still there?');
  await expect(erin.page.locator('.message.theirs .body').last()).toHaveText('still there?');
  await expect(erin.page.locator('.status')).toHaveText('Connected');
});

test('the keyboard alone is enough', async () => {
  const names = { gia: uniqueName('gia'), hal: uniqueName('hal') };
  const gia = await openPerson(browser, server);
  const hal = await openPerson(browser, server);
  await register(hal.page, names.hal);
  const keys = gia.page.keyboard;
  // The name field has the focus when the page opens.
  await keys.type(names.gia);
  await keys.press('Tab');
  await keys.type(PASSWORD);
  // Create an account: back to the switch above the form, then submit.
  await gia.page.getByRole('button', { name: 'Create account' }).focus();
  await keys.press('Enter');
  await gia.page.getByLabel('Password').focus();
  await keys.press('Enter');
  await expect(gia.page.locator('.me-name')).toHaveText(names.gia);

  await befriend(hal.page, gia.page, names.hal, names.gia);
  await gia.page.getByRole('button', { name: `Chat with ${names.hal}` }).focus();
  await keys.press('Enter');
  await expect(gia.page.locator('.chat-title')).toHaveText(names.hal);
  // The composer has the focus: Shift+Enter adds a line, Enter sends.
  await keys.type('two');
  await keys.press('Shift+Enter');
  await keys.type('lines');
  await keys.press('Enter');
  await openChat(hal.page, names.gia);
  await expect(hal.page.locator('.message.theirs .body')).toHaveText('two\nlines');
  // Escape goes back to the list, on the conversation just left.
  await keys.press('Escape');
  await expect(gia.page.locator('.chat-empty')).toBeVisible();
  const focused = await gia.page.evaluate(() => document.activeElement?.textContent ?? '');
  assert.ok(focused.includes(names.hal), `focus on the conversation, not ${focused}`);
  // And a visible focus ring on it.
  const outline = await gia.page.evaluate(() => {
    const active = document.activeElement;
    return active ? getComputedStyle(active).outlineStyle : 'none';
  });
  assert.notEqual(outline, 'none');
});
