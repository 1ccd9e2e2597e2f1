// The browser's protocol module against the byte examples of
// docs/protocol.md (section 4, "A login, byte by byte"), read from the
// document itself so the two cannot drift apart.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import {
  decodeFrame,
  encodeFrame,
  encodeRequest,
  Flags,
  frameLength,
  ProtocolError,
  PushType,
  RequestType,
  splitFrames,
  statusName,
  typeName,
} from '../src/protocol.js';

const doc = readFileSync(new URL('../../docs/protocol.md', import.meta.url), 'utf8');

/** The hex dumps (```text blocks of `offset  hex  |ascii|` lines) of section 4, as bytes. */
function dumps() {
  const section = doc.slice(doc.indexOf('## 4. A login, byte by byte'), doc.indexOf('## 5.'));
  const blocks = [...section.matchAll(/```text\n([\s\S]*?)```/g)].map((match) => match[1]);
  return blocks.map((block) => {
    const bytes = [];
    for (const line of block.split('\n')) {
      const hex = line.slice(10, 58).trim();
      if (!hex) continue;
      for (const pair of hex.split(/\s+/)) bytes.push(parseInt(pair, 16));
    }
    return Uint8Array.from(bytes);
  });
}

test('the document has the three dumps', () => {
  assert.equal(dumps().length, 3);
});

test('the login request encodes to the documented bytes', () => {
  const [request] = dumps();
  const encoded = new Uint8Array(
    encodeRequest(RequestType.login, 1, { user: 'alice', password: 'correct horse' }),
  );
  assert.deepEqual(encoded, request);
  const decoded = decodeFrame(request);
  assert.equal(decoded.flags, Flags.REQUEST);
  assert.equal(decoded.type, 0x0003);
  assert.equal(decoded.requestId, 1);
  assert.deepEqual(decoded.payload, { user: 'alice', password: 'correct horse' });
});

test('the login response decodes', () => {
  const [, response] = dumps();
  const frame = decodeFrame(response.buffer.slice(0));
  assert.equal(frame.flags, Flags.RESPONSE);
  assert.equal(frame.type, RequestType.login);
  assert.equal(frame.status, 0);
  assert.equal(frame.requestId, 1);
  assert.deepEqual(frame.payload.user, { id: 1, name: 'alice' });
  assert.equal(frame.payload.friends[0].name, 'bob');
  assert.equal(frame.payload.friends[0].conversation_id, 1);
  assert.equal(frame.payload.unacked, 2);
  // Re-encoding gives the same bytes: same key order, no spaces.
  assert.deepEqual(
    new Uint8Array(encodeFrame({ flags: 1, type: 3, requestId: 1, payload: frame.payload })),
    response,
  );
});

test('the error response decodes with its status', () => {
  const [, , error] = dumps();
  const frame = decodeFrame(error);
  assert.equal(frame.status, 2);
  assert.equal(statusName(frame.status), 'unauthorized');
  assert.deepEqual(frame.payload, { error: 'unauthorized', message: 'wrong name or password' });
});

test('a stream split at every byte yields the same frames', () => {
  const [request, response, error] = dumps();
  const stream = new Uint8Array(request.length + response.length + error.length);
  stream.set(request, 0);
  stream.set(response, request.length);
  stream.set(error, request.length + response.length);
  for (let cut = 0; cut <= stream.length; cut++) {
    const first = splitFrames(stream.subarray(0, cut));
    const joined = new Uint8Array(first.rest.length + stream.length - cut);
    joined.set(first.rest, 0);
    joined.set(stream.subarray(cut), first.rest.length);
    const second = splitFrames(joined);
    assert.equal(second.rest.length, 0);
    const frames = [...first.frames, ...second.frames];
    assert.deepEqual(
      frames.map((frame) => [frame.flags, frame.status]),
      [
        [0, 0],
        [1, 0],
        [1, 2],
      ],
    );
  }
});

test('incomplete input asks for more; bad headers are rejected', () => {
  const [request] = dumps();
  assert.equal(frameLength(request.subarray(0, 1)), null);
  assert.equal(frameLength(request.subarray(0, 15)), null);
  assert.equal(frameLength(request.subarray(0, 20)), null);
  assert.equal(frameLength(request), request.length);
  const bad = (/** @type {(bytes: Uint8Array) => void} */ change) => {
    const copy = request.slice();
    change(copy);
    return copy;
  };
  assert.throws(() => frameLength(bad((b) => (b[0] = 0x00))), ProtocolError);
  assert.throws(() => frameLength(bad((b) => (b[2] = 2))), ProtocolError);
  assert.throws(() => frameLength(bad((b) => (b[3] = 3))), ProtocolError);
  assert.throws(() => frameLength(bad((b) => (b[12] = 0xff)), 1024), ProtocolError);
  // A wrong magic is known from two bytes, before the header is complete.
  assert.throws(() => frameLength(Uint8Array.of(0x48, 0x43)), ProtocolError);
  // One WebSocket message must be exactly one frame.
  assert.throws(() => decodeFrame(request.subarray(0, 30)), ProtocolError);
  const twice = new Uint8Array(request.length * 2);
  twice.set(request, 0);
  twice.set(request, request.length);
  assert.throws(() => decodeFrame(twice), ProtocolError);
});

test('payloads must be JSON objects', () => {
  for (const text of ['[]', 'null', '"x"', '{', '\u00ff']) {
    const body = new TextEncoder().encode(text);
    const frame = new Uint8Array(16 + body.length);
    frame.set([0x43, 0x48, 1, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, body.length]);
    frame.set(body, 16);
    assert.throws(() => decodeFrame(frame), ProtocolError, text);
  }
});

test('request ids must be 1 to 2^32 - 1', () => {
  assert.throws(() => encodeRequest(RequestType.ping, 0, {}), RangeError);
  assert.throws(() => encodeRequest(RequestType.ping, 2 ** 32, {}), RangeError);
  const frame = decodeFrame(encodeRequest(RequestType.ping, 2 ** 32 - 1, {}));
  assert.equal(frame.requestId, 2 ** 32 - 1);
});

test('the type table matches the document', () => {
  const table = doc.slice(doc.indexOf('## 5. Message types'), doc.indexOf('## 6.'));
  const rows = [...table.matchAll(/^\| `0x([0-9a-f]{4})` \| `([a-z_]+)` \|/gm)];
  assert.ok(rows.length >= 28);
  for (const [, code, name] of rows) {
    assert.equal(typeName(parseInt(code, 16)), name);
  }
  assert.equal(PushType.push_message, 0x8001);
  assert.equal(statusName(12), 'unavailable');
  assert.equal(statusName(99), 'status_99');
});
