// The client's delivery rules without a server: de-duplication by
// (conversation, seq) and client_msg_id, gap filling, unread counts, and
// an outbox that resends with the same client_msg_id until answered.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ChatClient } from '../src/client.js';
import { ConnectionLost } from '../src/connection.js';
import { RequestError } from '../src/protocol.js';

/** A Storage in memory. */
function memoryStorage() {
  const items = new Map();
  return /** @type {Storage} */ (
    /** @type {unknown} */ ({
      getItem: (/** @type {string} */ key) => items.get(key) ?? null,
      setItem: (/** @type {string} */ key, /** @type {string} */ value) => items.set(key, value),
      removeItem: (/** @type {string} */ key) => items.delete(key),
    })
  );
}

/**
 * A signed-in client with one friend, bob (id 2, conversation 10), whose
 * requests go to `answer`.
 * @param {(name: string, payload: any) => Promise<any>} answer
 */
function client(answer = async () => ({})) {
  const chat = new ChatClient({ url: 'ws://unused', storage: memoryStorage() });
  chat.me = { id: 1, name: 'alice' };
  chat.ensureDirect({ id: 2, name: 'bob', remark: null, category: null, online: true, conversation_id: 10 });
  /** @type {{name: string, payload: any}[]} */
  const requests = [];
  const connection = {
    request: (/** @type {string} */ name, /** @type {any} */ payload) => {
      requests.push({ name, payload });
      return answer(name, payload);
    },
  };
  chat.connection = /** @type {any} */ (connection);
  chat.status = 'connected';
  return { chat, requests };
}

/**
 * A message in conversation 10.
 * @param {number} seq
 * @param {number} [sender]
 */
function message(seq, sender = 2) {
  return {
    conversation_id: 10,
    seq,
    sender_id: sender,
    sender_name: sender === 1 ? 'alice' : 'bob',
    target: { user: sender === 1 ? 2 : 1 },
    client_msg_id: `m-${sender}-${seq}`,
    body: `message ${seq}`,
    server_ts_ms: 1_767_225_600_000 + seq,
  };
}

const settle = () => new Promise((done) => setTimeout(done, 10));

test('a message seen twice is kept once', () => {
  const { chat } = client();
  chat.ingest(message(1), 'push');
  chat.ingest(message(1), 'sync');
  chat.ingest(message(1), 'history');
  const conversation = chat.conversations.get(10);
  assert.equal(conversation?.messages.size, 1);
  assert.equal(conversation?.unread, 1);
  assert.equal(conversation?.syncSeq, 1);
});

test('a gap is filled from history, then the cursor moves past it', async () => {
  const { chat, requests } = client(async (name, payload) => {
    assert.equal(name, 'history');
    assert.equal(payload.after_seq, 1);
    return { messages: [message(2), message(3)], has_more: false };
  });
  chat.ingest(message(1), 'push');
  chat.ingest(message(3), 'push');
  await settle();
  const conversation = chat.conversations.get(10);
  assert.deepEqual([...(conversation?.messages.keys() ?? [])].sort(), [1, 2, 3]);
  assert.equal(conversation?.syncSeq, 3);
  assert.equal(requests.filter((request) => request.name === 'history').length, 1);
});

test("one's own messages move the read position and count as read", () => {
  const { chat } = client();
  chat.ingest(message(1), 'push');
  chat.ingest(message(2, 1), 'sync');
  const conversation = chat.conversations.get(10);
  assert.equal(conversation?.readSeq, 2);
  assert.equal(conversation?.lastMessage?.preview, 'message 2');
});

test('a send is retried with the same client_msg_id after a lost connection', async () => {
  let attempt = 0;
  const { chat, requests } = client(async (name) => {
    if (name !== 'send') return {};
    attempt++;
    if (attempt === 1) throw new ConnectionLost();
    return { conversation_id: 10, seq: 5, server_ts_ms: 1_767_225_600_005, duplicate: attempt > 2 };
  });
  const conversation = chat.conversations.get(10);
  assert.ok(conversation);
  chat.send(conversation, 'hello');
  await settle();
  assert.equal(chat.outbox.length, 1);
  assert.equal(chat.outbox[0].state, 'queued');
  await chat.pumpOutbox();
  const sends = requests.filter((request) => request.name === 'send');
  assert.equal(sends.length, 2);
  assert.equal(sends[0].payload.client_msg_id, sends[1].payload.client_msg_id);
  assert.deepEqual(sends[0].payload.to, { user: 2 });
  assert.equal(chat.outbox.length, 0);
  assert.equal(conversation.messages.get(5)?.body, 'hello');
  // The push of the same message, from another session's point of view, adds nothing.
  chat.ingest({ ...message(5, 1), client_msg_id: sends[0].payload.client_msg_id, body: 'hello' }, 'push');
  assert.equal(conversation.messages.size, 1);
});

test('a refused send fails, and its retry keeps the client_msg_id', async () => {
  let refuse = true;
  const { chat, requests } = client(async (name) => {
    if (name !== 'send') return {};
    if (refuse) throw new RequestError(3, 'not friends');
    return { conversation_id: 10, seq: 1, server_ts_ms: 1, duplicate: false };
  });
  const conversation = chat.conversations.get(10);
  assert.ok(conversation);
  chat.send(conversation, 'are you there?');
  await settle();
  assert.equal(chat.outbox[0].state, 'failed');
  assert.equal(chat.outbox[0].error, 'not friends');
  refuse = false;
  chat.retry(chat.outbox[0].clientMsgId);
  await settle();
  const sends = requests.filter((request) => request.name === 'send');
  assert.equal(sends.length, 2);
  assert.equal(sends[0].payload.client_msg_id, sends[1].payload.client_msg_id);
  assert.equal(chat.outbox.length, 0);
});

test('the outbox outlives a reload of the page', () => {
  const storage = memoryStorage();
  const first = new ChatClient({ url: 'ws://unused', storage });
  first.me = { id: 1, name: 'alice' };
  const conversation = first.ensureDirect({ id: 2, name: 'bob', remark: null, category: null, online: false, conversation_id: 10 });
  first.send(conversation, 'typed offline');
  const second = new ChatClient({ url: 'ws://unused', storage });
  assert.equal(second.outbox.length, 1);
  assert.equal(second.outbox[0].clientMsgId, first.outbox[0].clientMsgId);
  assert.equal(second.outbox[0].state, 'queued');
});

test("read positions: others move read marks, one's own clears the count", () => {
  const { chat } = client();
  chat.ingest(message(1), 'push');
  chat.ingest(message(2), 'push');
  const conversation = chat.conversations.get(10);
  assert.equal(conversation?.unread, 2);
  chat.onPush({ name: 'push_read', payload: { conversation_id: 10, user_id: 1, read_seq: 2 } });
  assert.equal(conversation?.unread, 0);
  chat.onPush({ name: 'push_read', payload: { conversation_id: 10, user_id: 2, read_seq: 7 } });
  assert.equal(conversation?.readPositions.get(2), 7);
  chat.onPush({ name: 'push_recall', payload: { conversation_id: 10, seq: 2, recalled: { by: 2, at_ms: 9 } } });
  assert.equal(conversation?.messages.get(2)?.body, '');
  assert.deepEqual(conversation?.messages.get(2)?.recalled, { by: 2, at_ms: 9 });
  assert.equal(conversation?.lastMessage?.recalled, true);
});
