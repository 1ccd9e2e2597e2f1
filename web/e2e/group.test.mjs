// Three people in a group: the owner creates it, two join by its id, all
// chat, the owner removes one, who stops receiving the group's messages.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  ChatServer,
  expect,
  launchBrowser,
  openPerson,
  register,
  say,
  serverHasConversations,
  shownBodies,
  showTab,
  uniqueName,
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

test('a group: create, join, chat, kick', async () => {
  const [ann, ben, cat] = await Promise.all([openPerson(browser, server), openPerson(browser, server), openPerson(browser, server)]);
  const names = { ann: uniqueName('ann'), ben: uniqueName('ben'), cat: uniqueName('cat') };
  await register(ann.page, names.ann);
  await register(ben.page, names.ben);
  await register(cat.page, names.cat);

  // A friend request Cat declines: gone from both sides.
  await showTab(ben.page, 'Friends');
  await ben.page.getByLabel('Name', { exact: true }).fill(names.cat);
  await ben.page.getByRole('button', { name: 'Send request' }).click();
  await expect(ben.page.getByRole('list', { name: 'Requests sent' })).toContainText(names.cat);
  await showTab(cat.page, 'Friends');
  await cat.page.getByRole('button', { name: `Decline ${names.ben}` }).click();
  await expect(cat.page.getByRole('list', { name: 'Friend requests' })).toHaveCount(0);
  await expect(ben.page.getByRole('list', { name: 'Requests sent' })).toHaveCount(0);
  await expect(ben.page.locator('.friend')).toHaveCount(0);

  await showTab(ann.page, 'Groups');
  await ann.page.getByLabel('Group name').fill('Book club');
  await ann.page.getByLabel('Description (optional)').fill('Mondays at eight');
  await ann.page.getByRole('button', { name: 'Create group' }).click();
  await expect(ann.page.locator('.chat-title')).toHaveText('Book club');
  const subtitle = await ann.page.locator('.chat-subtitle').textContent();
  const groupId = /#(\d+)/.exec(subtitle ?? '')?.[1];
  assert.ok(groupId, `group id in ${subtitle}`);

  for (const person of [ben, cat]) {
    await showTab(person.page, 'Groups');
    await person.page.getByLabel('Group id').fill(groupId);
    await person.page.getByRole('button', { name: 'Join', exact: true }).click();
    await expect(person.page.locator('.chat-title')).toHaveText('Book club');
  }
  await expect(ann.page.locator('.chat-subtitle')).toHaveText(`Group #${groupId} · 3 members`);

  await say(ann.page, 'welcome, both of you');
  await expect(ben.page.locator('.message.theirs .body')).toHaveText('welcome, both of you');
  await expect(cat.page.locator('.message.theirs .body')).toHaveText('welcome, both of you');
  if (await serverHasConversations(ann.page)) {
    // Both have the group open, so both have read it.
    await expect(ann.page.locator('.message.mine .state')).toHaveText('✓✓ Read by 2');
  }
  await say(ben.page, 'thanks!');
  await expect(cat.page.locator('.message.theirs .body').last()).toHaveText('thanks!');
  await expect(ann.page.locator('.message.theirs .sender')).toHaveText(names.ben);

  // The member list shows roles and presence; the owner makes Ben an admin.
  await ann.page.getByRole('button', { name: 'Members' }).click();
  const dialog = ann.page.getByRole('dialog');
  await expect(dialog.locator('.member')).toHaveCount(3);
  await expect(dialog.locator('.member', { hasText: names.ann })).toContainText('owner');
  await expect(dialog.locator('.member .dot.online')).toHaveCount(3);
  await dialog.getByLabel(`Role of ${names.ben}`).selectOption('admin');
  await expect(dialog.locator('.member', { hasText: names.ben }).locator('.role')).toHaveText('admin');
  await ann.page.keyboard.press('Escape');
  await expect(ann.page.getByRole('dialog')).toHaveCount(0);

  // Ben, an admin now, removes Cat, a plain member.
  await ben.page.getByRole('button', { name: 'Members' }).click();
  const benDialog = ben.page.getByRole('dialog');
  await expect(benDialog.locator('.member', { hasText: names.ben }).locator('.role')).toHaveText('admin');
  await expect(benDialog.getByRole('button', { name: `Remove ${names.ann} from the group` })).toHaveCount(0);
  await benDialog.getByRole('button', { name: `Remove ${names.cat} from the group` }).click();
  await ben.page.getByRole('dialog', { name: 'Remove member' }).getByRole('button', { name: 'Remove' }).click();
  await expect(benDialog.locator('.member')).toHaveCount(2);
  await ben.page.keyboard.press('Escape');
  await expect(ben.page.getByRole('dialog')).toHaveCount(0);

  // Cat's group is gone from her lists, and she gets nothing more.
  await expect(cat.page.locator('.chat-empty')).toBeVisible();
  await showTab(cat.page, 'Chats');
  await expect(cat.page.locator('.conversation-list')).toHaveCount(0);
  await say(ann.page, 'just the two of us now');
  await expect(ben.page.locator('.message.theirs .body').last()).toHaveText('just the two of us now');
  await cat.page.waitForTimeout(1000);
  await expect(cat.page.locator('.conversation')).toHaveCount(0);
  assert.equal(await cat.page.title(), 'chatd');

  // Ben leaves; Ann, the owner, dissolves the group.
  await ben.page.getByRole('button', { name: 'Members' }).click();
  await expect(ben.page.getByRole('dialog').locator('.member')).toHaveCount(2);
  await ben.page.getByRole('button', { name: 'Leave group' }).click();
  await ben.page.getByRole('dialog', { name: 'Leave group' }).getByRole('button', { name: 'Leave' }).click();
  await expect(ben.page.locator('.chat-empty')).toBeVisible();
  await expect(ann.page.locator('.chat-subtitle')).toHaveText(`Group #${groupId} · 1 member`);
  assert.deepEqual(await shownBodies(ann.page), ['welcome, both of you', 'thanks!', 'just the two of us now']);
  await ann.page.getByRole('button', { name: 'Members' }).click();
  await ann.page.getByRole('button', { name: 'Dissolve group' }).click();
  await ann.page.getByRole('dialog', { name: 'Dissolve group' }).getByRole('button', { name: 'Dissolve' }).click();
  await expect(ann.page.locator('.chat-empty')).toBeVisible();
  await expect(ann.page.getByRole('dialog')).toHaveCount(0);
  await showTab(ann.page, 'Groups');
  await expect(ann.page.locator('.group-list')).toHaveCount(0);
  for (const person of [ann, ben, cat]) assert.deepEqual(person.dialogs, []);
});
