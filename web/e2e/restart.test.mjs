// chatd stops and starts again while two pages are open: both show that
// they are reconnecting, a message typed meanwhile waits in the outbox,
// and after the restart it is delivered exactly once.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { befriend, ChatServer, expect, launchBrowser, openChat, openPerson, register, say, shownBodies, uniqueName } from './harness.mjs';

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

test('a server restart loses nothing and doubles nothing', async () => {
  const alice = await openPerson(browser, server);
  const bob = await openPerson(browser, server);
  const names = { alice: uniqueName('alice'), bob: uniqueName('bob') };
  await register(alice.page, names.alice);
  await register(bob.page, names.bob);
  await befriend(alice.page, bob.page, names.alice, names.bob);
  await openChat(alice.page, names.bob);
  await openChat(bob.page, names.alice);
  await say(alice.page, 'before the restart');
  await expect(bob.page.locator('.message.theirs .body')).toHaveText('before the restart');

  await server.stop();
  await expect(alice.page.locator('.status')).toHaveText('Reconnecting…');
  await expect(bob.page.locator('.status')).toHaveText('Reconnecting…');

  // Typed while the server is down: it waits, marked as such.
  await say(alice.page, 'typed while offline');
  await expect(alice.page.locator('.message.pending .state')).toContainText('Waiting for connection');

  await server.startProcess();
  await expect(alice.page.locator('.status')).toHaveText('Connected');
  await expect(bob.page.locator('.status')).toHaveText('Connected');
  await expect(bob.page.locator('.message.theirs .body').last()).toHaveText('typed while offline');
  await expect(alice.page.locator('.message.pending')).toHaveCount(0);

  // Both directions work after the restart.
  await say(bob.page, 'welcome back');
  await expect(alice.page.locator('.message.theirs .body').last()).toHaveText('welcome back');
  await bob.page.waitForTimeout(1000);
  const expected = ['before the restart', 'typed while offline', 'welcome back'];
  assert.deepEqual(await shownBodies(alice.page), expected);
  assert.deepEqual(await shownBodies(bob.page), expected);

  // A reload after all that still shows each message once.
  await bob.page.reload();
  await openChat(bob.page, names.alice);
  await expect(bob.page.locator('.message .body')).toHaveCount(3);
  assert.deepEqual(await shownBodies(bob.page), expected);
});
