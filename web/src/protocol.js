// The chatd wire protocol, version 1, for the browser (docs/protocol.md):
// the 16-byte frame header over ArrayBuffer/DataView, JSON payloads, the
// type codes and the status codes. Pure functions over bytes: no sockets.

/** The two magic bytes `C` `H`, as one big-endian number. */
export const MAGIC = 0x4348;
/** The protocol version this module speaks. */
export const VERSION = 1;
/** Bytes in a frame header. */
export const HEADER_LEN = 16;
/** The largest payload this client accepts from a server (32 MiB). */
export const CLIENT_MAX_PAYLOAD = 32 * 1024 * 1024;

/** Header flags. */
export const Flags = Object.freeze({ REQUEST: 0x00, RESPONSE: 0x01, PUSH: 0x02 });

/** Request type codes (a response carries its request's code). */
export const RequestType = Object.freeze({
  ping: 0x0001,
  register: 0x0002,
  login: 0x0003,
  logout: 0x0004,
  session_list: 0x0010,
  session_revoke: 0x0011,
  friend_add: 0x0101,
  friend_respond: 0x0102,
  friend_remove: 0x0103,
  friend_list: 0x0104,
  friend_update: 0x0105,
  group_create: 0x0201,
  group_join: 0x0202,
  group_leave: 0x0203,
  group_dissolve: 0x0204,
  group_kick: 0x0205,
  group_set_role: 0x0206,
  group_info: 0x0207,
  group_members: 0x0208,
  group_list: 0x0209,
  group_set_policy: 0x020a,
  group_invite: 0x020b,
  group_respond_join: 0x020c,
  group_unban: 0x020d,
  send: 0x0301,
  ack: 0x0302,
  history: 0x0303,
  sync: 0x0304,
  conversation_list: 0x0305,
  read: 0x0306,
  read_positions: 0x0307,
  typing: 0x0308,
  recall: 0x0309,
});

/** Push type codes (server to client only). */
export const PushType = Object.freeze({
  push_message: 0x8001,
  push_friend_request: 0x8002,
  push_friend_update: 0x8003,
  push_presence: 0x8004,
  push_group_event: 0x8005,
  push_session_ended: 0x8006,
  push_read: 0x8007,
  push_typing: 0x8008,
  push_recall: 0x8009,
  push_group_join_request: 0x800a,
  push_group_invitation: 0x800b,
});

/** @typedef {keyof typeof RequestType} RequestName */
/** @typedef {keyof typeof PushType} PushName */

/** Status names by code; any other non-zero code is an error too. */
export const STATUS_NAMES = Object.freeze([
  'ok',
  'bad_request',
  'unauthorized',
  'forbidden',
  'not_found',
  'conflict',
  'rate_limited',
  'too_large',
  'unsupported_version',
  'unknown_type',
  'protocol_error',
  'internal',
  'unavailable',
]);

/**
 * The name of a status code (`status_17` for codes this client does not know).
 * @param {number} status
 * @returns {string}
 */
export function statusName(status) {
  return STATUS_NAMES[status] ?? `status_${status}`;
}

/**
 * The name of a type code, or `null` for a code this client does not know.
 * @param {number} type
 * @returns {string | null}
 */
export function typeName(type) {
  for (const table of [RequestType, PushType]) {
    for (const [name, code] of Object.entries(table)) {
      if (code === type) return name;
    }
  }
  return null;
}

/**
 * One decoded frame.
 * @typedef {object} Frame
 * @property {number} flags
 * @property {number} type
 * @property {number} status
 * @property {number} requestId
 * @property {Record<string, any>} payload
 */

/** A frame that breaks the framing rules, or a payload that is not a JSON object. */
export class ProtocolError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = 'ProtocolError';
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Encodes one frame: the header, then the payload as UTF-8 JSON.
 * @param {{flags?: number, type: number, status?: number, requestId?: number, payload?: object}} frame
 * @returns {ArrayBuffer}
 */
export function encodeFrame({ flags = Flags.REQUEST, type, status = 0, requestId = 0, payload = {} }) {
  const body = encoder.encode(JSON.stringify(payload));
  const buffer = new ArrayBuffer(HEADER_LEN + body.length);
  const view = new DataView(buffer);
  view.setUint16(0, MAGIC);
  view.setUint8(2, VERSION);
  view.setUint8(3, flags);
  view.setUint16(4, type);
  view.setUint16(6, status);
  view.setUint32(8, requestId >>> 0);
  view.setUint32(12, body.length);
  new Uint8Array(buffer, HEADER_LEN).set(body);
  return buffer;
}

/**
 * Encodes a request.
 * @param {number} type
 * @param {number} requestId from 1 to 2^32 - 1
 * @param {object} payload
 * @returns {ArrayBuffer}
 */
export function encodeRequest(type, requestId, payload) {
  if (!Number.isInteger(requestId) || requestId < 1 || requestId > 0xffffffff) {
    throw new RangeError(`request id ${requestId} out of range`);
  }
  return encodeFrame({ flags: Flags.REQUEST, type, requestId, payload });
}

/**
 * Checks the start of a byte stream, following the decoding steps of the
 * protocol: `null` while more bytes are needed, else the length of the
 * first whole frame (header included).
 * @param {Uint8Array} bytes
 * @param {number} [maxPayload]
 * @returns {number | null}
 * @throws {ProtocolError} on bad magic, version, flags or an over-long length
 */
export function frameLength(bytes, maxPayload = CLIENT_MAX_PAYLOAD) {
  if (bytes.length < 2) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint16(0) !== MAGIC) throw new ProtocolError('bad magic');
  if (bytes.length < HEADER_LEN) return null;
  const version = view.getUint8(2);
  if (version !== VERSION) throw new ProtocolError(`unsupported version ${version}`);
  const flags = view.getUint8(3);
  if (flags > Flags.PUSH) throw new ProtocolError(`invalid flags 0x${flags.toString(16)}`);
  const length = view.getUint32(12);
  if (length > maxPayload) throw new ProtocolError(`frame of ${length} bytes is too large`);
  if (bytes.length < HEADER_LEN + length) return null;
  return HEADER_LEN + length;
}

/**
 * Decodes exactly one whole frame (a WebSocket message carries one).
 * @param {ArrayBuffer | Uint8Array} data
 * @param {number} [maxPayload]
 * @returns {Frame}
 * @throws {ProtocolError} when the bytes are not exactly one valid frame
 */
export function decodeFrame(data, maxPayload = CLIENT_MAX_PAYLOAD) {
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  const total = frameLength(bytes, maxPayload);
  if (total === null) throw new ProtocolError('incomplete frame');
  if (total !== bytes.length) throw new ProtocolError('bytes after the frame');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let payload;
  try {
    payload = JSON.parse(decoder.decode(bytes.subarray(HEADER_LEN, total)));
  } catch (error) {
    throw new ProtocolError(`payload is not UTF-8 JSON: ${error}`);
  }
  if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) {
    throw new ProtocolError('payload is not a JSON object');
  }
  return {
    flags: view.getUint8(3),
    type: view.getUint16(4),
    status: view.getUint16(6),
    requestId: view.getUint32(8),
    payload,
  };
}

/**
 * Splits a buffered byte stream into the whole frames at its front.
 * @param {Uint8Array} bytes
 * @returns {{frames: Frame[], rest: Uint8Array}} the frames, and the bytes of an incomplete one
 */
export function splitFrames(bytes) {
  /** @type {Frame[]} */
  const frames = [];
  let rest = bytes;
  for (;;) {
    const total = frameLength(rest);
    if (total === null) return { frames, rest };
    frames.push(decodeFrame(rest.subarray(0, total)));
    rest = rest.subarray(total);
  }
}

/** An error answer to a request: its status and the server's explanation. */
export class RequestError extends Error {
  /**
   * @param {number} status
   * @param {string} message
   */
  constructor(status, message) {
    super(message || statusName(status));
    this.name = 'RequestError';
    this.status = status;
    this.code = statusName(status);
  }
}
