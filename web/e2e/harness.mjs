// What the browser tests share: a real chatd on free ports with a SQLite
// file in a temporary directory (stopped and started again at will),
// Chromium through playwright-core, and the steps people take in the app.
//
// CHATD_BIN names the chatd binary (the Rust test that runs this suite
// passes its own build); CHATD_CHROMIUM the browser (default
// /usr/bin/chromium). Screenshots go to CHATD_SCREENSHOTS (default
// target/web-screenshots at the repository root).

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from './expect.mjs';

import { chromium } from 'playwright-core';

const repository = resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const SCREENSHOTS = process.env.CHATD_SCREENSHOTS ?? join(repository, 'target', 'web-screenshots');
export const PASSWORD = 'correct horse battery';

/** @returns {Promise<number>} a port nothing listens on right now */
function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

/** @param {number} ms */
export const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

/** A chatd process on its own ports and database. */
export class ChatServer {
  /** @param {string[]} [extraArgs] */
  static async start(extraArgs = []) {
    const server = new ChatServer(await freePort(), await freePort(), extraArgs);
    await server.startProcess();
    return server;
  }

  /**
   * @param {number} chatPort
   * @param {number} httpPort
   * @param {string[]} extraArgs
   */
  constructor(chatPort, httpPort, extraArgs) {
    this.binary = process.env.CHATD_BIN ?? join(repository, 'target', 'debug', 'chatd');
    this.dir = mkdtempSync(join(tmpdir(), 'chatd-web-'));
    this.chatPort = chatPort;
    this.httpPort = httpPort;
    this.extraArgs = extraArgs;
    /** @type {import('node:child_process').ChildProcess | null} */
    this.child = null;
    this.log = '';
  }

  get url() {
    return `http://127.0.0.1:${this.httpPort}/`;
  }

  async startProcess() {
    const child = spawn(
      this.binary,
      [
        '--listen', `127.0.0.1:${this.chatPort}`,
        '--http-listen', `127.0.0.1:${this.httpPort}`,
        '--store', `sqlite://${join(this.dir, 'chat.db')}`,
        '--shutdown-grace-secs', '2',
        ...this.extraArgs,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, RUST_LOG: 'warn' } },
    );
    child.stderr?.on('data', (chunk) => {
      this.log += chunk;
    });
    this.child = child;
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`chatd exited (${child.exitCode}): ${this.log}`);
      try {
        const response = await fetch(`${this.url}healthz`);
        if (response.ok) return;
      } catch {
        // Not listening yet.
      }
      await sleep(100);
    }
    throw new Error(`chatd did not start: ${this.log}`);
  }

  /** Stops chatd gracefully (SIGTERM) and waits for it to exit. */
  async stop() {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((done) => child.once('exit', done));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
    this.child = null;
  }

  async restart() {
    await this.stop();
    await this.startProcess();
  }

  async close() {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Chromium, headless, from the system. */
export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHATD_CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
}

/**
 * A new person: a browser context of their own with a page on the app,
 * collecting every dialog and console error.
 * @param {import('playwright-core').Browser} browser
 * @param {ChatServer} server
 * @param {{viewport?: {width: number, height: number}}} [options]
 */
export async function openPerson(browser, server, options = {}) {
  const context = await browser.newContext({ viewport: options.viewport ?? { width: 1200, height: 800 } });
  context.setDefaultTimeout(15_000);
  const page = await context.newPage();
  /** @type {string[]} */
  const dialogs = [];
  /** @type {string[]} */
  const errors = [];
  page.on('dialog', async (dialog) => {
    dialogs.push(dialog.message());
    await dialog.dismiss();
  });
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(message.text());
  });
  page.on('pageerror', (error) => errors.push(String(error)));
  await page.goto(server.url);
  return { context, page, dialogs, errors };
}

/**
 * Creates an account in the sign-in screen (and so signs in).
 * @param {import('playwright-core').Page} page
 * @param {string} name
 */
export async function register(page, name) {
  await page.getByRole('button', { name: 'Create account' }).click();
  await page.getByLabel('Name').fill(name);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.locator('form.signin-form button[type=submit]').click();
  await expect(page.locator('.status')).toHaveText('Connected');
  await expect(page.locator('.me-name')).toHaveText(name);
}

/**
 * @param {import('playwright-core').Page} page
 * @param {'Chats' | 'Friends' | 'Groups'} tab
 */
export async function showTab(page, tab) {
  // On a phone the conversation covers the list: go back to it first.
  const back = page.getByRole('button', { name: 'Back to conversations' });
  if (await back.isVisible()) await back.click();
  await page.locator('.tabs').getByRole('button', { name: tab }).click();
}

/**
 * Asks `friend` to be friends, and `friendPage` accepts.
 * @param {import('playwright-core').Page} page
 * @param {import('playwright-core').Page} friendPage
 * @param {string} me
 * @param {string} friend
 */
export async function befriend(page, friendPage, me, friend) {
  await showTab(page, 'Friends');
  await page.getByLabel('Name', { exact: true }).fill(friend);
  await page.getByLabel('Greeting (optional)').fill(`hi, it's ${me}`);
  await page.getByRole('button', { name: 'Send request' }).click();
  await expect(page.locator('.form-status').first()).toHaveText(`Request sent to ${friend}.`);
  await showTab(friendPage, 'Friends');
  await expect(friendPage.locator('.request-list')).toContainText(`hi, it's ${me}`);
  await friendPage.getByRole('button', { name: `Accept ${me}` }).click();
  await expect(friendPage.locator('.friend-list')).toContainText(me);
  await expect(page.locator('.friend-list')).toContainText(friend);
}

/**
 * Opens the conversation with this name from the Chats tab.
 * @param {import('playwright-core').Page} page
 * @param {string} name
 */
export async function openChat(page, name) {
  await showTab(page, 'Chats');
  await page.locator('.conversation', { has: page.locator('.conversation-name', { hasText: new RegExp(`^${name}$`) }) }).click();
  await expect(page.locator('.chat-title')).toHaveText(name);
}

/**
 * Types a message and sends it with Enter.
 * @param {import('playwright-core').Page} page
 * @param {string} text
 */
export async function say(page, text) {
  await page.getByLabel('Message', { exact: true }).fill(text);
  await page.getByLabel('Message', { exact: true }).press('Enter');
}

/**
 * The bodies of the messages shown, in order.
 * @param {import('playwright-core').Page} page
 */
export async function shownBodies(page) {
  return page.locator('.message-list .message .body').allTextContents();
}

/** @param {string} prefix */
export function uniqueName(prefix) {
  return `${prefix}${Math.random().toString(36).slice(2, 8)}`;
}

/** @param {string} name */
export function screenshotPath(name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  return join(SCREENSHOTS, name);
}

export { expect };

/**
 * Whether the server knows the conversation requests (list, read,
 * typing, recall): asks `conversation_list` before login, which a server
 * without them answers `unknown_type`.
 * @param {import('playwright-core').Page} page a page of the app
 * @returns {Promise<boolean>}
 */
export async function serverHasConversations(page) {
  return page.evaluate(async () => {
    // The page's own module, by its URL (not a path on this machine).
    const url = '/src/protocol.js';
    /** @type {typeof import('../src/protocol.js')} */
    const protocol = await import(url);
    const socket = new WebSocket(`ws://${location.host}/ws`, 'chatd.v1');
    socket.binaryType = 'arraybuffer';
    await new Promise((done) => socket.addEventListener('open', done, { once: true }));
    const answer = new Promise((done) =>
      socket.addEventListener('message', (event) => done(protocol.decodeFrame(event.data)), { once: true }),
    );
    socket.send(protocol.encodeRequest(protocol.RequestType.conversation_list, 1, {}));
    const frame = /** @type {import('../src/protocol.js').Frame} */ (await answer);
    socket.close();
    return protocol.statusName(frame.status) !== 'unknown_type';
  });
}
