// Two people in two browser contexts: they register, become friends,
// chat both ways, see unread counts, typing, read marks and recalls, send
// each other hostile markup that stays text, and reload without losing
// or doubling anything.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  befriend,
  ChatServer,
  expect,
  launchBrowser,
  openChat,
  openPerson,
  register,
  say,
  serverHasConversations,
  showTab,
  shownBodies,
  uniqueName,
} from './harness.mjs';
import { expectTitle, poll } from './expect.mjs';

/** @type {ChatServer} */
let server;
/** @type {import('playwright-core').Browser} */
let browser;
/** @type {Awaited<ReturnType<typeof openPerson>>} */
let alice;
/** @type {Awaited<ReturnType<typeof openPerson>>} */
let bob;
const aliceName = uniqueName('alice');
const bobName = uniqueName('bob');
let conversations = false;

before(async () => {
  server = await ChatServer.start();
  browser = await launchBrowser();
  alice = await openPerson(browser, server);
  bob = await openPerson(browser, server);
  conversations = await serverHasConversations(alice.page);
});

after(async () => {
  await browser?.close();
  await server?.close();
});

test('two people register and become friends', async () => {
  await register(alice.page, aliceName);
  await register(bob.page, bobName);
  await befriend(alice.page, bob.page, aliceName, bobName);
  // Bob's presence shows on Alice's side.
  await expect(alice.page.locator('.friend .dot.online')).toHaveCount(1);
});

test('they chat both ways', async () => {
  await openChat(alice.page, bobName);
  await say(alice.page, 'hello bob');
  await openChat(bob.page, aliceName);
  await expect(bob.page.locator('.message.theirs .body')).toHaveText('hello bob');
  const shownBefore = await alice.page.locator('.message').first().elementHandle();
  await say(bob.page, 'hi alice\nhow are you?');
  await expect(alice.page.locator('.message.theirs .body')).toHaveText('hi alice\nhow are you?');
  // A new message is added to the list; what was shown stays as it was.
  assert.equal(await shownBefore?.evaluate((element) => element.isConnected), true);
  // Shift+Enter made a new line; Enter sent it.
  assert.deepEqual(await shownBodies(alice.page), ['hello bob', 'hi alice\nhow are you?']);
  assert.deepEqual(await shownBodies(bob.page), ['hello bob', 'hi alice\nhow are you?']);
  // Bob has the conversation open: with read positions, he has read it.
  await expect(alice.page.locator('.message.mine .state')).toHaveText(conversations ? '✓✓ Read' : '✓ Sent');
});

test('unread messages show in the list badge and the tab title', async () => {
  // Bob leaves the conversation (Escape) and looks at his friends.
  await bob.page.getByLabel('Message', { exact: true }).press('Escape');
  await expect(bob.page.locator('.chat-empty')).toBeVisible();
  await showTab(bob.page, 'Friends');
  await say(alice.page, 'first unread');
  await say(alice.page, 'second unread');
  await expectTitle(bob.page, '(2) chatd');
  await expect(bob.page.locator('.tab[data-tab="chats"] .badge')).toHaveText('2');
  await showTab(bob.page, 'Chats');
  await expect(bob.page.locator('.conversation .badge')).toHaveText('2');
  await expect(bob.page.locator('.conversation-preview')).toHaveText('second unread');
  await openChat(bob.page, aliceName);
  await expectTitle(bob.page, 'chatd');
  await expect(bob.page.locator('.conversation .badge')).toHaveCount(0);
});

test('typing shows, read marks follow, a recalled message says so', async (t) => {
  if (!conversations) {
    t.skip('this chatd has no conversation requests (typing, read, recall)');
    return;
  }
  // Typing for two seconds, as a person would.
  await bob.page.getByLabel('Message', { exact: true }).pressSequentially('I am typing slowly', { delay: 120 });
  await expect(alice.page.locator('.chat-subtitle')).toHaveText('typing…');
  await bob.page.getByLabel('Message', { exact: true }).fill('');
  // Bob has the conversation open, so Alice's last message is read.
  await expect(alice.page.locator('.message.mine').last().locator('.state')).toContainText('Read');
  await say(alice.page, 'oops, wrong chat');
  await expect(bob.page.locator('.message.theirs .body').last()).toHaveText('oops, wrong chat');
  await alice.page.locator('.message.mine').last().getByRole('button', { name: 'Recall this message' }).click();
  await expect(alice.page.locator('.message.recalled')).toHaveText(/You recalled this message/);
  await expect(bob.page.locator('.message.recalled')).toHaveText(/This message was recalled/);
  await bob.page.waitForTimeout(300);
  assert.ok(!(await shownBodies(bob.page)).includes('oops, wrong chat'));
});

test('hostile markup is shown as text and runs nothing', async () => {
  const hostile = ['<img src=x onerror=alert(1)>', '<script>alert(2)</script>', 'https://example.com/ <b>bold</b> & "quotes"'];
  for (const body of hostile) await say(alice.page, body);
  await expect(bob.page.locator('.message.theirs .body').last()).toHaveText(hostile[2]);
  const bodies = await shownBodies(bob.page);
  for (const body of hostile) assert.ok(bodies.includes(body), `${body} shown as text`);
  await expect(bob.page.locator('.message-list img')).toHaveCount(0);
  await expect(bob.page.locator('.message-list script')).toHaveCount(0);
  await expect(bob.page.locator('.message-list a')).toHaveCount(0);
  // Names are people's text too: a group named like markup.
  const groupName = '<img src=x onerror=alert(3)>';
  await showTab(alice.page, 'Groups');
  await alice.page.getByLabel('Group name').fill(groupName);
  await alice.page.getByLabel('Description (optional)').fill('<script>alert(4)</script>');
  await alice.page.getByRole('button', { name: 'Create group' }).click();
  await expect(alice.page.locator('.chat-title')).toHaveText(groupName);
  await alice.page.getByRole('button', { name: 'Members' }).click();
  await expect(alice.page.getByRole('dialog')).toContainText('<script>alert(4)</script>');
  await alice.page.keyboard.press('Escape');
  await expect(alice.page.locator('img[src="x"]')).toHaveCount(0);
  await openChat(alice.page, bobName);
  await bob.page.waitForTimeout(500);
  assert.deepEqual(bob.dialogs, []);
  assert.deepEqual(alice.dialogs, []);
});

test('a reload keeps the login and the history, with nothing doubled', async () => {
  const before = await shownBodies(bob.page);
  await bob.page.reload();
  await expect(bob.page.locator('.status')).toHaveText('Connected');
  await expect(bob.page.locator('.me-name')).toHaveText(bobName);
  await openChat(bob.page, aliceName);
  const afterReload = await poll(
    () => shownBodies(bob.page),
    (bodies) => bodies.length >= before.length,
    'the history after the reload',
  );
  assert.deepEqual(afterReload, before);
  // And the conversation goes on.
  await say(alice.page, 'still there?');
  await expect(bob.page.locator('.message.theirs .body').last()).toHaveText('still there?');
  await bob.page.waitForTimeout(500);
  assert.deepEqual(await shownBodies(bob.page), [...before, 'still there?']);
});

test('unread counts and read positions survive a reload', async (t) => {
  if (!conversations) {
    t.skip('this chatd has no conversation list or read positions');
    return;
  }
  await bob.page.getByLabel('Message', { exact: true }).press('Escape');
  await expect(bob.page.locator('.chat-empty')).toBeVisible();
  await say(alice.page, 'read me after the reload');
  await expectTitle(bob.page, '(1) chatd');
  await bob.page.reload();
  await expect(bob.page.locator('.status')).toHaveText('Connected');
  // The count comes from the server now, not from this page's memory.
  await expectTitle(bob.page, '(1) chatd');
  await expect(bob.page.locator('.conversation .badge')).toHaveText('1');
  await expect(bob.page.locator('.conversation-preview')).toHaveText('read me after the reload');
  await openChat(bob.page, aliceName);
  await expectTitle(bob.page, 'chatd');
  await expect(alice.page.locator('.message.mine').last().locator('.state')).toHaveText('✓✓ Read');
  // Read on the server: another reload shows nothing unread.
  await bob.page.reload();
  await expect(bob.page.locator('.status')).toHaveText('Connected');
  await expect(bob.page.locator('.conversation')).toHaveCount(1);
  await bob.page.waitForTimeout(500);
  assert.equal(await bob.page.title(), 'chatd');
  await expect(bob.page.locator('.conversation .badge')).toHaveCount(0);
});

test('scrolling up reads older history as far as it goes', async () => {
  await openChat(bob.page, aliceName);
  // The chat's history arrives after it opens: count it once it has come
  // (the earlier tests left messages here) and stopped changing.
  let before = -1;
  for (let round = 0; round < 40; round++) {
    const shown = (await shownBodies(bob.page)).length;
    if (shown > 0 && shown === before) break;
    before = shown;
    await bob.page.waitForTimeout(150);
  }
  const more = 60;
  for (let index = 1; index <= more; index++) await say(alice.page, `numbered ${index}`);
  await expect(bob.page.locator('.message .body').last()).toHaveText(`numbered ${more}`);
  await bob.page.reload();
  await openChat(bob.page, aliceName);
  await expect(bob.page.locator('.message .body').last()).toHaveText(`numbered ${more}`);
  // One page is shown; the rest comes when scrolling to the top.
  assert.ok((await shownBodies(bob.page)).length < before + more);
  for (let round = 0; round < 10 && (await shownBodies(bob.page)).length < before + more; round++) {
    await bob.page.locator('.messages').evaluate((element) => element.scrollTo({ top: 0 }));
    await bob.page.waitForTimeout(300);
  }
  const bodies = await shownBodies(bob.page);
  assert.equal(bodies.length, before + more);
  assert.equal(new Set(bodies.filter((body) => body.startsWith('numbered'))).size, more);
  await expect(bob.page.getByRole('button', { name: 'Load older messages' })).toBeHidden();
  // Away from the newest, a button leads back to it, counting what came meanwhile.
  await expect(bob.page.getByRole('button', { name: 'Jump to newest ↓' })).toBeVisible();
  await say(alice.page, 'and one more');
  await expect(bob.page.getByRole('button', { name: '1 new ↓' })).toBeVisible();
  await expectTitle(bob.page, '(1) chatd');
  await bob.page.getByRole('button', { name: '1 new ↓' }).click();
  await expect(bob.page.locator('.jump')).toBeHidden();
  await expectTitle(bob.page, 'chatd');
  assert.equal((await shownBodies(bob.page)).at(-1), 'and one more');
});

test('a message to a former friend fails, and its retry sends it once they are friends again', async () => {
  await showTab(bob.page, 'Friends');
  await bob.page.getByRole('button', { name: `Remove ${aliceName}` }).click();
  await bob.page.getByRole('dialog', { name: 'Remove friend' }).getByRole('button', { name: 'Remove' }).click();
  await expect(bob.page.locator('.friend')).toHaveCount(0);
  await expect(alice.page.locator('.chat-subtitle')).toHaveText('not a friend any more');
  await say(alice.page, 'are you still there?');
  await expect(alice.page.locator('.message.failed .state')).toContainText('Not sent');
  // Friends again, with a remark and a category this time.
  await befriend(bob.page, alice.page, bobName, aliceName);
  await alice.page.getByRole('button', { name: `Edit ${bobName}` }).click();
  await alice.page.getByLabel('Remark (a name only you see)').fill('Bobby');
  await alice.page.getByLabel('Category').fill('hiking');
  await alice.page.getByRole('button', { name: 'Save' }).click();
  await expect(alice.page.locator('.section-title').last()).toHaveText('hiking');
  await expect(alice.page.locator('.friend-name')).toHaveText(`Bobby (${bobName})`);
  await openChat(alice.page, 'Bobby');
  await alice.page.getByRole('button', { name: 'Retry' }).click();
  await expect(alice.page.locator('.message.failed')).toHaveCount(0);
  await openChat(bob.page, aliceName);
  await expect(bob.page.locator('.message.theirs .body').last()).toHaveText('are you still there?');
  await bob.page.waitForTimeout(500);
  const bodies = await shownBodies(bob.page);
  assert.equal(bodies.filter((body) => body === 'are you still there?').length, 1);
});

test('signing out forgets the login', async () => {
  await bob.page.getByRole('button', { name: 'Sign out' }).click();
  await expect(bob.page.getByRole('button', { name: 'Create account' })).toBeVisible();
  await bob.page.reload();
  await expect(bob.page.getByRole('button', { name: 'Create account' })).toBeVisible();
  assert.deepEqual(bob.errors.filter((error) => !error.includes('WebSocket')), []);
  assert.deepEqual(alice.errors.filter((error) => !error.includes('WebSocket')), []);
});
