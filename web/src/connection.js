// One WebSocket to chatd: requests matched to their responses by request
// id, pushes handed to a callback, a ping when the line is quiet, and a
// dead line noticed when a ping goes unanswered.

import {
  decodeFrame,
  encodeRequest,
  Flags,
  ProtocolError,
  PushType,
  RequestError,
  RequestType,
  typeName,
} from './protocol.js';

/** The WebSocket subprotocol of the chat protocol. */
export const SUBPROTOCOL = 'chatd.v1';

/** Send a ping after this long without a request (the server's idle timeout is 60 s). */
const PING_EVERY_MS = 20_000;
/** A request (a ping included) unanswered for this long means the line is dead. */
const REQUEST_TIMEOUT_MS = 15_000;

/** The connection ended before the request was answered: its outcome is unknown. */
export class ConnectionLost extends Error {
  constructor() {
    super('the connection to the server was lost');
    this.name = 'ConnectionLost';
  }
}

/**
 * @typedef {object} Push
 * @property {import('./protocol.js').PushName | string} name
 * @property {Record<string, any>} payload
 */

/**
 * @typedef {object} ConnectionHandlers
 * @property {(push: Push) => void} onPush every push, in arrival order
 * @property {(reason: string) => void} onClose once, when the connection ends for any reason
 */

/** The URL of the WebSocket endpoint of the server this page came from. */
export function defaultUrl() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws`;
}

export class Connection {
  /**
   * Opens a connection; resolves once the WebSocket is open.
   * @param {string} url
   * @param {ConnectionHandlers} handlers
   * @returns {Promise<Connection>}
   */
  static open(url, handlers) {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url, SUBPROTOCOL);
      socket.binaryType = 'arraybuffer';
      const failed = () => reject(new ConnectionLost());
      socket.addEventListener('error', failed, { once: true });
      socket.addEventListener('close', failed, { once: true });
      socket.addEventListener(
        'open',
        () => {
          socket.removeEventListener('error', failed);
          socket.removeEventListener('close', failed);
          resolve(new Connection(socket, handlers));
        },
        { once: true },
      );
    });
  }

  /**
   * @param {WebSocket} socket an open socket
   * @param {ConnectionHandlers} handlers
   */
  constructor(socket, handlers) {
    this.socket = socket;
    this.handlers = handlers;
    this.nextRequestId = 1;
    /** @type {Map<number, {resolve: (payload: any) => void, reject: (error: Error) => void, timer: ReturnType<typeof setTimeout>}>} */
    this.pending = new Map();
    this.closed = false;
    this.lastSent = Date.now();
    socket.addEventListener('message', (event) => this.receive(event.data));
    socket.addEventListener('close', (event) => this.end(`closed (${event.code})`));
    socket.addEventListener('error', () => this.end('error'));
    this.pinger = setInterval(() => {
      if (Date.now() - this.lastSent >= PING_EVERY_MS) {
        this.request('ping', {}).catch(() => {});
      }
    }, PING_EVERY_MS / 4);
  }

  /**
   * Sends a request; resolves with the response payload.
   * @param {import('./protocol.js').RequestName} name
   * @param {object} payload
   * @returns {Promise<any>}
   * @throws {RequestError} when the server answers with an error status
   * @throws {ConnectionLost} when the connection ends first
   */
  request(name, payload) {
    if (this.closed) return Promise.reject(new ConnectionLost());
    const requestId = this.nextRequestId;
    this.nextRequestId = this.nextRequestId >= 0xffffffff ? 1 : this.nextRequestId + 1;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        // No answer in time: the line is dead, whatever TCP thinks.
        this.end('a request timed out');
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(requestId, { resolve, reject, timer });
      this.lastSent = Date.now();
      this.socket.send(encodeRequest(RequestType[name], requestId, payload));
    });
  }

  /** Closes the connection; pending requests fail with {@link ConnectionLost}. */
  close() {
    this.end('closed by the client');
  }

  /** @param {unknown} data */
  receive(data) {
    if (!(data instanceof ArrayBuffer)) {
      this.end('the server sent a text message');
      return;
    }
    let frame;
    try {
      frame = decodeFrame(data);
    } catch (error) {
      this.end(error instanceof ProtocolError ? error.message : 'bad frame');
      return;
    }
    if (frame.flags === Flags.PUSH) {
      const name = typeName(frame.type);
      // Push types this client does not know are ignored (protocol §12).
      if (name && frame.type in PUSH_BY_CODE) this.handlers.onPush({ name, payload: frame.payload });
      return;
    }
    const waiter = this.pending.get(frame.requestId);
    if (!waiter) return;
    this.pending.delete(frame.requestId);
    clearTimeout(waiter.timer);
    if (frame.status === 0) {
      waiter.resolve(frame.payload);
    } else {
      waiter.reject(new RequestError(frame.status, String(frame.payload.message ?? '')));
    }
  }

  /** @param {string} reason */
  end(reason) {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.pinger);
    for (const waiter of this.pending.values()) {
      clearTimeout(waiter.timer);
      waiter.reject(new ConnectionLost());
    }
    this.pending.clear();
    try {
      this.socket.close();
    } catch {
      // Already closing.
    }
    this.handlers.onClose(reason);
  }
}

/** @type {Record<number, string>} */
const PUSH_BY_CODE = Object.fromEntries(Object.entries(PushType).map(([name, code]) => [code, name]));
