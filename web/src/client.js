// The chat client: the signed-in user's view of the server (friends,
// groups, conversations and their messages) kept up to date over a
// Connection, with the delivery rules of docs/protocol.md §10: reconnect
// with backoff and jitter, log in again with the token, sync from cursors,
// drop repeats by (conversation_id, seq), fill gaps from history, and an
// outbox whose messages keep their client_msg_id until the server answers.
//
// The UI listens for `change` events and reads the state; it never talks
// to the connection itself.

import { Connection, ConnectionLost, defaultUrl } from './connection.js';
import { RequestError } from './protocol.js';

/** @typedef {{id: number, name: string}} UserSummary */
/** @typedef {{id: number, name: string, remark: string | null, category: string | null, online: boolean, conversation_id: number}} Friend */
/** @typedef {{from: UserSummary, to: UserSummary, message: string | null, created_at_ms: number}} FriendRequestInfo */
/** @typedef {'owner' | 'admin' | 'member'} Role */
/** @typedef {{id: number, name: string, description: string, owner_id: number, conversation_id: number, member_count: number, my_role: Role | null, created_at_ms: number}} Group */
/** @typedef {{id: number, name: string, role: Role, online: boolean}} Member */
/** @typedef {{by: number, at_ms: number}} Recalled */
/**
 * @typedef {object} ChatMessage
 * @property {number} conversation_id
 * @property {number} seq
 * @property {number} sender_id
 * @property {string} sender_name
 * @property {{user?: number, group?: number}} target
 * @property {string} client_msg_id
 * @property {string} body
 * @property {number} server_ts_ms
 * @property {Recalled} [recalled]
 */
/**
 * A message typed here that the server has not confirmed yet.
 * @typedef {object} OutboxEntry
 * @property {string} clientMsgId
 * @property {number} conversationId
 * @property {{user?: number, group?: number}} to
 * @property {string} body
 * @property {number} createdAtMs
 * @property {'queued' | 'sending' | 'failed'} state
 * @property {string} [error]
 */
/**
 * @typedef {object} Conversation
 * @property {number} id
 * @property {'direct' | 'group'} kind
 * @property {number | null} peerId
 * @property {number | null} groupId
 * @property {string} title the peer's or group's name when it is not a friend or group of ours any more
 * @property {Map<number, ChatMessage>} messages by seq
 * @property {number} syncSeq everything up to here has been seen (the sync cursor); 0 when unknown
 * @property {boolean} historyLoaded whether the newest page was read
 * @property {boolean} hasOlder whether history has older messages than the oldest held
 * @property {number} lastSeq
 * @property {number} readSeq the user's read position
 * @property {number} unread
 * @property {number} lastActivityMs
 * @property {{seq: number, sender_id: number, sender_name: string, preview: string, server_ts_ms: number, recalled: boolean} | null} lastMessage
 * @property {Map<number, number>} readPositions other members' read positions (user id to seq)
 * @property {Map<number, number>} typing who is typing, until when (ms)
 */
/** @typedef {'signed-out' | 'connecting' | 'connected' | 'reconnecting'} Status */

const TOKEN_KEY = 'chatd.token';
const OUTBOX_KEY = 'chatd.outbox';
/** How long "typing…" shows after the last typing push. */
export const TYPING_SHOWN_MS = 6000;
/** How often a typing notice is re-sent while the user types. */
const TYPING_EVERY_MS = 3000;
/** The sender may recall a message this long after sending it (the server's default). */
export const RECALL_WINDOW_MS = 2 * 60 * 1000;
const HISTORY_PAGE = 50;

/**
 * A random identifier (crypto.getRandomValues works on plain http too).
 * @returns {string}
 */
function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');
}

/** @param {number} ms */
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The text shown for a message in the conversation list.
 * @param {ChatMessage} message
 */
function previewOf(message) {
  return {
    seq: message.seq,
    sender_id: message.sender_id,
    sender_name: message.sender_name,
    preview: message.body.slice(0, 120),
    server_ts_ms: message.server_ts_ms,
    recalled: Boolean(message.recalled),
  };
}

export class ChatClient extends EventTarget {
  /** @param {{url?: string, storage?: Storage}} [options] */
  constructor(options = {}) {
    super();
    this.url = options.url ?? defaultUrl();
    this.storage = options.storage ?? sessionStorage;
    /** @type {Status} */
    this.status = 'signed-out';
    /** @type {UserSummary | null} */
    this.me = null;
    /** @type {Map<number, Friend>} */
    this.friends = new Map();
    /** @type {Map<number, Group>} */
    this.groups = new Map();
    /** @type {FriendRequestInfo[]} */
    this.incoming = [];
    /** @type {FriendRequestInfo[]} */
    this.outgoing = [];
    /** @type {Map<number, Conversation>} */
    this.conversations = new Map();
    /** @type {OutboxEntry[]} */
    this.outbox = this.loadOutbox();
    /** @type {Map<number, Member[]>} group id to members, when asked */
    this.members = new Map();
    /** Whether the server has the conversation requests (list, read, typing, recall). */
    this.hasConversations = true;
    /** @type {Connection | null} */
    this.connection = null;
    /** @type {number | null} the conversation on screen, for read positions */
    this.openConversationId = null;
    /** Why the last sign-in ended, for the sign-in screen. */
    this.signOutReason = '';
    this.wanted = false;
    this.attempt = 0;
    this.reconnecting = false;
    this.pumping = false;
    /** @type {Map<number, number>} conversation to the last typing notice sent */
    this.typingSent = new Map();
    /** @type {Map<number, ReturnType<typeof setTimeout>>} */
    this.ackTimers = new Map();
    /** @type {Set<number>} conversations being gap-filled */
    this.filling = new Set();
    /** @type {(() => void) | null} wakes the reconnect wait early */
    this.wake = null;
  }

  /** Tells the UI that something changed. @param {string} [what] */
  changed(what = 'state') {
    this.dispatchEvent(new CustomEvent('change', { detail: what }));
  }

  /** @param {Status} status */
  setStatus(status) {
    if (this.status !== status) {
      this.status = status;
      this.changed('status');
    }
  }

  /** Whether a token from an earlier sign-in is kept. */
  hasToken() {
    return Boolean(this.storage.getItem(TOKEN_KEY));
  }

  // ---- signing in and out ----

  /**
   * Creates an account, then signs in with it.
   * @param {string} name
   * @param {string} password
   */
  async register(name, password) {
    const connection = await Connection.open(this.url, { onPush: () => {}, onClose: () => {} });
    try {
      await connection.request('register', { name, password });
    } finally {
      connection.close();
    }
    await this.signIn({ user: name, password });
  }

  /**
   * Signs in with a password, then keeps the session connected (and
   * reconnects with the token it got) until sign-out.
   * @param {{user: string, password: string}} credentials
   */
  async signIn(credentials) {
    this.setStatus('connecting');
    let connection;
    try {
      connection = await this.connect();
    } catch (error) {
      this.setStatus('signed-out');
      throw error;
    }
    this.wanted = true;
    try {
      const login = await connection.request('login', credentials);
      this.storage.setItem(TOKEN_KEY, login.token);
      await this.afterLogin(connection, login);
    } catch (error) {
      this.wanted = false;
      connection.close();
      this.setStatus('signed-out');
      throw error;
    }
    this.attempt = 0;
    this.setStatus('connected');
    this.pumpOutbox();
  }

  /**
   * Signs in again with the kept token (after a page reload), retrying
   * with backoff while the server is unreachable.
   */
  async resume() {
    this.wanted = true;
    this.attempt = 0;
    this.setStatus('connecting');
    await this.reconnect();
  }

  /** Signs out: revokes the token on the server, forgets everything here. */
  async signOut() {
    this.wanted = false;
    const connection = this.connection;
    if (connection) {
      await connection.request('logout', {}).catch(() => {});
      connection.close();
    }
    this.forget();
    this.reset();
    this.setStatus('signed-out');
  }

  /** Drops the kept token and outbox. */
  forget() {
    this.storage.removeItem(TOKEN_KEY);
    this.storage.removeItem(OUTBOX_KEY);
    this.outbox = [];
  }

  reset() {
    this.me = null;
    this.friends.clear();
    this.groups.clear();
    this.incoming = [];
    this.outgoing = [];
    this.conversations.clear();
    this.members.clear();
    this.openConversationId = null;
  }

  /** @returns {Promise<Connection>} */
  async connect() {
    /** @type {Connection} */
    const connection = await Connection.open(this.url, {
      onPush: (push) => this.onPush(push),
      onClose: () => this.onClose(connection),
    });
    this.connection = connection;
    return connection;
  }

  /** @param {Connection} connection */
  onClose(connection) {
    if (this.connection !== connection) return;
    this.connection = null;
    for (const entry of this.outbox) if (entry.state === 'sending') entry.state = 'queued';
    if (this.wanted) {
      this.setStatus('reconnecting');
      this.reconnect();
    }
  }

  /** Reconnects with exponential backoff and jitter until signed in again or signed out. */
  async reconnect() {
    if (this.reconnecting) return;
    this.reconnecting = true;
    try {
      while (this.wanted && !this.connection) {
        const base = Math.min(8000, 250 * 2 ** Math.min(this.attempt, 5));
        this.attempt++;
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, base / 2 + Math.random() * (base / 2));
          this.wake = () => {
            clearTimeout(timer);
            resolve(undefined);
          };
        });
        this.wake = null;
        if (!this.wanted) return;
        let connection;
        try {
          connection = await this.connect();
        } catch {
          this.setStatus('reconnecting');
          continue;
        }
        try {
          const login = await connection.request('login', { token: this.storage.getItem(TOKEN_KEY) });
          await this.afterLogin(connection, login);
          this.attempt = 0;
          this.setStatus('connected');
          this.pumpOutbox();
        } catch (error) {
          if (error instanceof RequestError && error.code === 'unauthorized') {
            this.endSession('Your session has expired. Please sign in again.');
            return;
          }
          if (error instanceof RequestError && error.code === 'forbidden') {
            this.endSession(error.message);
            return;
          }
          connection.close();
          this.setStatus('reconnecting');
        }
      }
    } finally {
      this.reconnecting = false;
    }
  }

  /** Tries at once instead of waiting out the backoff (the browser went online). */
  retryNow() {
    this.attempt = 0;
    this.wake?.();
  }

  /** @param {string} reason shown on the sign-in screen */
  endSession(reason) {
    this.wanted = false;
    this.signOutReason = reason;
    this.connection?.close();
    this.connection = null;
    this.forget();
    this.reset();
    this.setStatus('signed-out');
  }

  /**
   * Everything after a successful login: the state it describes, the
   * conversation list, the sync, and the outbox.
   * @param {Connection} connection
   * @param {any} login
   */
  async afterLogin(connection, login) {
    if (this.me && this.me.id !== login.user.id) this.reset();
    this.me = login.user;
    this.friends = new Map(login.friends.map((/** @type {Friend} */ friend) => [friend.id, friend]));
    this.groups = new Map(login.groups.map((/** @type {Group} */ group) => [group.id, group]));
    this.incoming = login.incoming_requests;
    this.outgoing = login.outgoing_requests;
    for (const friend of this.friends.values()) this.ensureDirect(friend);
    for (const group of this.groups.values()) this.ensureGroup(group);
    // Groups left, or removed from, while disconnected.
    for (const conversation of [...this.conversations.values()]) {
      if (conversation.kind === 'group' && !this.groups.has(conversation.groupId ?? 0)) {
        this.conversations.delete(conversation.id);
        if (this.openConversationId === conversation.id) this.openConversationId = null;
      }
    }
    for (const row of login.unread ?? []) {
      const conversation = this.conversations.get(row.conversation_id);
      if (conversation) {
        conversation.readSeq = row.read_seq;
        conversation.lastSeq = Math.max(conversation.lastSeq, row.last_seq);
        conversation.unread = row.unread;
      }
    }
    this.changed();
    await this.loadConversationList(connection);
    await this.sync(connection);
    for (const conversation of this.conversations.values()) this.scheduleAck(conversation);
    if (this.openConversationId !== null) {
      const open = this.conversations.get(this.openConversationId);
      if (open) {
        await this.loadNewest(open).catch(() => {});
        if (this.hasConversations) this.loadReadPositions(open);
      }
    }
    this.changed();
  }

  /** @param {Friend} friend */
  ensureDirect(friend) {
    const conversation = this.conversation(friend.conversation_id, 'direct');
    conversation.peerId = friend.id;
    conversation.title = friend.remark || friend.name;
    return conversation;
  }

  /** @param {Group} group */
  ensureGroup(group) {
    const conversation = this.conversation(group.conversation_id, 'group');
    conversation.groupId = group.id;
    conversation.title = group.name;
    if (!conversation.lastActivityMs) conversation.lastActivityMs = group.created_at_ms;
    return conversation;
  }

  /**
   * The conversation with this id, created empty if new.
   * @param {number} id
   * @param {'direct' | 'group'} kind
   * @returns {Conversation}
   */
  conversation(id, kind) {
    let conversation = this.conversations.get(id);
    if (!conversation) {
      conversation = {
        id,
        kind,
        peerId: null,
        groupId: null,
        title: '',
        messages: new Map(),
        syncSeq: 0,
        historyLoaded: false,
        hasOlder: false,
        lastSeq: 0,
        readSeq: 0,
        unread: 0,
        lastActivityMs: 0,
        lastMessage: null,
        readPositions: new Map(),
        typing: new Map(),
      };
      this.conversations.set(id, conversation);
    }
    return conversation;
  }

  /** @param {Connection} connection */
  async loadConversationList(connection) {
    /** @type {any} */
    let before = null;
    for (let page = 0; page < 20; page++) {
      let answer;
      try {
        answer = await connection.request('conversation_list', { before, limit: 200 });
      } catch (error) {
        if (error instanceof RequestError && (error.code === 'unknown_type' || error.code === 'bad_request')) {
          this.hasConversations = false;
          await this.loadPreviews(connection);
          return;
        }
        throw error;
      }
      this.hasConversations = true;
      for (const row of answer.conversations) {
        const conversation = this.conversation(row.conversation_id, row.kind);
        if (row.peer) {
          conversation.peerId = row.peer.id;
          conversation.title = row.peer.remark || row.peer.name;
        }
        if (row.group) {
          conversation.groupId = row.group.id;
          conversation.title = row.group.name;
        }
        conversation.lastSeq = Math.max(conversation.lastSeq, row.last_seq);
        conversation.syncSeq = Math.max(conversation.syncSeq, row.last_seq);
        conversation.readSeq = Math.max(conversation.readSeq, row.read_seq);
        conversation.unread = row.unread;
        conversation.lastActivityMs = Math.max(conversation.lastActivityMs, row.last_activity_ms);
        if (row.last_message) conversation.lastMessage = row.last_message;
      }
      const last = answer.conversations[answer.conversations.length - 1];
      if (!answer.has_more || !last) return;
      before = { last_activity_ms: last.last_activity_ms, conversation_id: last.conversation_id };
    }
  }

  /**
   * Without the conversation list, the newest page of every conversation
   * gives its preview and where the sync starts.
   * @param {Connection} connection
   */
  async loadPreviews(connection) {
    for (const conversation of this.conversations.values()) {
      if (conversation.historyLoaded) continue;
      const page = await connection.request('history', { conversation_id: conversation.id, limit: HISTORY_PAGE });
      conversation.historyLoaded = true;
      conversation.hasOlder = page.has_more;
      for (const message of page.messages) this.ingest(message, 'history');
      const newest = page.messages[page.messages.length - 1];
      if (newest) {
        conversation.syncSeq = Math.max(conversation.syncSeq, newest.seq);
        conversation.readSeq = Math.max(conversation.readSeq, newest.seq);
      }
      conversation.unread = 0;
    }
  }

  /** @param {Connection} connection */
  async sync(connection) {
    for (let round = 0; round < 100; round++) {
      const cursors = [];
      for (const conversation of this.conversations.values()) {
        if (conversation.syncSeq > 0) cursors.push({ conversation_id: conversation.id, seq: conversation.syncSeq });
      }
      const answer = await connection.request('sync', { cursors, limit: 1000 });
      for (const message of answer.messages) this.ingest(message, 'sync');
      if (!answer.has_more) return;
    }
  }

  // ---- incoming ----

  /** @param {import('./connection.js').Push} push */
  onPush({ name, payload }) {
    switch (name) {
      case 'push_message':
        this.ingest(/** @type {ChatMessage} */ (payload), 'push');
        break;
      case 'push_friend_request':
        this.incoming = this.incoming.filter((request) => request.from.id !== payload.request.from.id);
        this.incoming.push(payload.request);
        break;
      case 'push_friend_update':
        this.incoming = this.incoming.filter((request) => request.from.id !== payload.user.id);
        this.outgoing = this.outgoing.filter((request) => request.to.id !== payload.user.id);
        if (payload.kind === 'accepted' && payload.friend) {
          this.friends.set(payload.friend.id, payload.friend);
          const conversation = this.ensureDirect(payload.friend);
          if (!conversation.lastActivityMs) conversation.lastActivityMs = Date.now();
        } else if (payload.kind === 'removed') {
          this.friends.delete(payload.user.id);
        }
        break;
      case 'push_presence': {
        const friend = this.friends.get(payload.user_id);
        if (friend) friend.online = payload.online;
        for (const members of this.members.values()) {
          for (const member of members) if (member.id === payload.user_id) member.online = payload.online;
        }
        break;
      }
      case 'push_group_event':
        this.onGroupEvent(payload);
        break;
      case 'push_session_ended':
        if (payload.reason === 'logged_out') {
          this.endSession(payload.message || 'You were signed out.');
        }
        // Other reasons: the connection closes next and we reconnect.
        break;
      case 'push_read':
        this.onRead(/** @type {{conversation_id: number, user_id: number, read_seq: number}} */ (payload));
        break;
      case 'push_typing': {
        const conversation = this.conversations.get(payload.conversation_id);
        if (conversation && payload.user_id !== this.me?.id) {
          conversation.typing.set(payload.user_id, Date.now() + TYPING_SHOWN_MS);
          setTimeout(() => this.changed('typing'), TYPING_SHOWN_MS + 50);
        }
        break;
      }
      case 'push_recall': {
        const conversation = this.conversations.get(payload.conversation_id);
        const message = conversation?.messages.get(payload.seq);
        if (conversation && message) {
          message.recalled = payload.recalled;
          message.body = '';
        }
        const last = conversation?.lastMessage;
        if (conversation && last && last.seq === payload.seq) {
          conversation.lastMessage = { ...last, recalled: true, preview: '' };
        }
        break;
      }
      default:
        return;
    }
    this.changed(name);
  }

  /** @param {any} event */
  onGroupEvent(event) {
    const group = this.groups.get(event.group_id);
    const mine = event.user_id === this.me?.id;
    this.members.delete(event.group_id);
    if (event.kind === 'dissolved' || (mine && (event.kind === 'kicked' || event.kind === 'left'))) {
      if (group) {
        this.groups.delete(group.id);
        this.conversations.delete(group.conversation_id);
        if (this.openConversationId === group.conversation_id) this.openConversationId = null;
      }
      return;
    }
    if (!group) {
      if (mine && event.kind === 'joined') {
        this.request('group_info', { group_id: event.group_id })
          .then((answer) => {
            this.groups.set(answer.group.id, answer.group);
            this.ensureGroup(answer.group);
            this.changed('group');
          })
          .catch(() => {});
      }
      return;
    }
    if (event.kind === 'joined') group.member_count++;
    if (event.kind === 'kicked' || event.kind === 'left') group.member_count = Math.max(1, group.member_count - 1);
    if (event.kind === 'role_changed') {
      if (event.role === 'owner') group.owner_id = event.user_id;
      if (mine) group.my_role = event.role;
    }
  }

  /** @param {{conversation_id: number, user_id: number, read_seq: number}} read */
  onRead(read) {
    const conversation = this.conversations.get(read.conversation_id);
    if (!conversation) return;
    if (read.user_id === this.me?.id) {
      if (read.read_seq > conversation.readSeq) {
        conversation.readSeq = read.read_seq;
        conversation.unread = this.countUnread(conversation);
      }
    } else {
      const known = conversation.readPositions.get(read.user_id) ?? 0;
      conversation.readPositions.set(read.user_id, Math.max(known, read.read_seq));
    }
  }

  /**
   * Unread messages as far as the messages held tell.
   * @param {Conversation} conversation
   */
  countUnread(conversation) {
    if (conversation.readSeq >= conversation.lastSeq) return 0;
    let count = 0;
    let held = 0;
    for (const message of conversation.messages.values()) {
      if (message.seq <= conversation.readSeq) continue;
      held++;
      if (message.sender_id !== this.me?.id) count++;
    }
    // Every message after the read position is here: count exactly.
    if (held === conversation.lastSeq - conversation.readSeq) return count;
    return Math.min(conversation.unread, conversation.lastSeq - conversation.readSeq);
  }

  /**
   * Takes a message from a push, a sync, a history page or a send answer;
   * a message already held is dropped (by conversation and seq).
   * @param {ChatMessage} message
   * @param {'push' | 'sync' | 'history' | 'sent'} source
   */
  ingest(message, source) {
    const kind = message.target.group !== undefined ? 'group' : 'direct';
    const conversation = this.conversation(message.conversation_id, kind);
    const mine = message.sender_id === this.me?.id;
    if (kind === 'direct' && conversation.peerId === null && this.me) {
      conversation.peerId = mine ? (message.target.user ?? null) : message.sender_id;
      if (!mine && !conversation.title) conversation.title = message.sender_name;
    }
    if (mine) {
      const index = this.outbox.findIndex((entry) => entry.clientMsgId === message.client_msg_id);
      if (index >= 0) {
        this.outbox.splice(index, 1);
        this.saveOutbox();
      }
    }
    if (conversation.messages.has(message.seq)) return;
    conversation.messages.set(message.seq, message);
    const fresh = message.seq > conversation.lastSeq;
    if (fresh) {
      conversation.lastSeq = message.seq;
      conversation.lastMessage = previewOf(message);
      conversation.lastActivityMs = Math.max(conversation.lastActivityMs, message.server_ts_ms);
    }
    if (mine) {
      // Sending moves the sender's own read position.
      conversation.readSeq = Math.max(conversation.readSeq, message.seq);
    } else if (source !== 'history' && fresh && message.seq > conversation.readSeq) {
      conversation.unread++;
      conversation.typing.delete(message.sender_id);
      if (source === 'push') this.dispatchEvent(new CustomEvent('message', { detail: message }));
    }
    if (source === 'history') return;
    // Gap: the messages between the cursor and this one are missing.
    if (conversation.syncSeq > 0 && message.seq > conversation.syncSeq + 1) {
      this.fillGap(conversation);
    } else if (message.seq === conversation.syncSeq + 1 || conversation.syncSeq === 0) {
      conversation.syncSeq = Math.max(conversation.syncSeq, message.seq);
      while (conversation.messages.has(conversation.syncSeq + 1)) conversation.syncSeq++;
    }
    if (!mine) this.scheduleAck(conversation);
    if (this.openConversationId === conversation.id) this.dispatchEvent(new CustomEvent('arrived', { detail: conversation.id }));
  }

  /**
   * Reads the messages missing after the sync cursor from history.
   * @param {Conversation} conversation
   */
  async fillGap(conversation) {
    if (this.filling.has(conversation.id)) return;
    this.filling.add(conversation.id);
    try {
      while (conversation.lastSeq > conversation.syncSeq) {
        const page = await this.request('history', {
          conversation_id: conversation.id,
          after_seq: conversation.syncSeq,
          limit: 200,
        });
        for (const message of page.messages) this.ingest(message, 'history');
        const before = conversation.syncSeq;
        while (conversation.messages.has(conversation.syncSeq + 1)) conversation.syncSeq++;
        if (conversation.syncSeq === before) break;
      }
      this.scheduleAck(conversation);
      this.changed('messages');
    } catch {
      // The next reconnect syncs from the cursor.
    } finally {
      this.filling.delete(conversation.id);
    }
  }

  /**
   * Acknowledges delivery up to the cursor, a moment later and once for a burst.
   * @param {Conversation} conversation
   */
  scheduleAck(conversation) {
    if (this.ackTimers.has(conversation.id) || conversation.syncSeq === 0) return;
    this.ackTimers.set(
      conversation.id,
      setTimeout(() => {
        this.ackTimers.delete(conversation.id);
        this.request('ack', { conversation_id: conversation.id, seq: conversation.syncSeq }).catch(() => {});
      }, 300),
    );
  }

  // ---- requests the UI makes ----

  /**
   * Sends a request on the current connection.
   * @param {import('./protocol.js').RequestName} name
   * @param {object} payload
   * @returns {Promise<any>}
   */
  request(name, payload) {
    if (!this.connection) return Promise.reject(new ConnectionLost());
    return this.connection.request(name, payload);
  }

  /**
   * The newest page of a conversation (once), and any holes between the
   * messages held.
   * @param {Conversation} conversation
   */
  async loadNewest(conversation) {
    if (!conversation.historyLoaded) {
      const page = await this.request('history', { conversation_id: conversation.id, limit: HISTORY_PAGE });
      conversation.historyLoaded = true;
      conversation.hasOlder = page.has_more;
      for (const message of page.messages) this.ingest(message, 'history');
      const newest = page.messages[page.messages.length - 1];
      if (newest && newest.seq > conversation.syncSeq) {
        conversation.syncSeq = newest.seq;
        conversation.lastSeq = Math.max(conversation.lastSeq, newest.seq);
      }
    }
    await this.fillHoles(conversation);
    this.changed('messages');
  }

  /**
   * Reads the messages missing between the oldest and newest held (a login
   * backlog holds only others' messages).
   * @param {Conversation} conversation
   */
  async fillHoles(conversation) {
    for (let round = 0; round < 10; round++) {
      const seqs = [...conversation.messages.keys()].sort((a, b) => a - b);
      let hole = -1;
      for (let index = seqs.length - 1; index > 0; index--) {
        if (seqs[index] !== seqs[index - 1] + 1) {
          hole = index;
          break;
        }
      }
      if (hole < 0) return;
      const page = await this.request('history', {
        conversation_id: conversation.id,
        after_seq: seqs[hole - 1],
        before_seq: seqs[hole],
        limit: 200,
      });
      if (page.messages.length === 0) return;
      for (const message of page.messages) this.ingest(message, 'history');
    }
  }

  /**
   * The page of messages before the oldest held.
   * @param {Conversation} conversation
   * @returns {Promise<number>} how many arrived
   */
  async loadOlder(conversation) {
    const oldest = Math.min(...conversation.messages.keys());
    if (!Number.isFinite(oldest) || oldest <= 1) {
      conversation.hasOlder = false;
      return 0;
    }
    const page = await this.request('history', {
      conversation_id: conversation.id,
      before_seq: oldest,
      limit: HISTORY_PAGE,
    });
    conversation.hasOlder = page.has_more;
    for (const message of page.messages) this.ingest(message, 'history');
    this.changed('older');
    return page.messages.length;
  }

  /**
   * The conversation is on screen: load it and mark it read.
   * @param {number | null} conversationId
   */
  async open(conversationId) {
    this.openConversationId = conversationId;
    this.changed('open');
    if (conversationId === null) return;
    const conversation = this.conversations.get(conversationId);
    if (!conversation) return;
    if (this.hasConversations) this.loadReadPositions(conversation);
    await this.loadNewest(conversation).catch(() => {});
    this.markRead(conversation);
  }

  /** @param {Conversation} conversation */
  async loadReadPositions(conversation) {
    try {
      const answer = await this.request('read_positions', { conversation_id: conversation.id });
      for (const position of answer.positions) {
        if (position.user_id !== this.me?.id) conversation.readPositions.set(position.user_id, position.read_seq);
      }
      this.changed('read');
    } catch {
      // Shown without "read by" counts.
    }
  }

  /**
   * Moves the read position to the newest message held.
   * @param {Conversation} conversation
   */
  markRead(conversation) {
    const newest = Math.max(0, ...conversation.messages.keys());
    if (conversation.unread === 0 && newest <= conversation.readSeq) return;
    conversation.unread = 0;
    if (newest > conversation.readSeq) {
      conversation.readSeq = newest;
      if (this.hasConversations) {
        this.request('read', { conversation_id: conversation.id, seq: newest }).catch(() => {});
      }
    }
    this.changed('read');
  }

  /**
   * Tells the others the user is typing (at most every few seconds).
   * @param {Conversation} conversation
   */
  typing(conversation) {
    if (!this.hasConversations || !this.connection) return;
    const last = this.typingSent.get(conversation.id) ?? 0;
    if (Date.now() - last < TYPING_EVERY_MS) return;
    this.typingSent.set(conversation.id, Date.now());
    this.request('typing', { conversation_id: conversation.id }).catch(() => {});
  }

  /**
   * Who is typing in a conversation now.
   * @param {Conversation} conversation
   * @returns {number[]}
   */
  typists(conversation) {
    const now = Date.now();
    return [...conversation.typing].filter(([, until]) => until > now).map(([user]) => user);
  }

  /**
   * Queues a message and sends it when connected.
   * @param {Conversation} conversation
   * @param {string} body
   */
  send(conversation, body) {
    const to = conversation.kind === 'group' ? { group: conversation.groupId ?? 0 } : { user: conversation.peerId ?? 0 };
    // The next keystroke starts a new message: tell the others soon, as
    // soon as the server's limit (one a second) lets it through.
    const lastTyping = this.typingSent.get(conversation.id);
    if (lastTyping !== undefined) {
      this.typingSent.set(conversation.id, Math.min(lastTyping, Date.now() - TYPING_EVERY_MS + 1100));
    }
    this.outbox.push({
      clientMsgId: `web-${randomId()}`,
      conversationId: conversation.id,
      to,
      body,
      createdAtMs: Date.now(),
      state: 'queued',
    });
    this.saveOutbox();
    this.changed('outbox');
    this.pumpOutbox();
  }

  /**
   * Sends a failed message again, with the same client_msg_id.
   * @param {string} clientMsgId
   */
  retry(clientMsgId) {
    const entry = this.outbox.find((candidate) => candidate.clientMsgId === clientMsgId);
    if (!entry) return;
    entry.state = 'queued';
    delete entry.error;
    this.changed('outbox');
    this.pumpOutbox();
  }

  /** @param {string} clientMsgId */
  discard(clientMsgId) {
    this.outbox = this.outbox.filter((entry) => entry.clientMsgId !== clientMsgId);
    this.saveOutbox();
    this.changed('outbox');
  }

  /** Sends queued messages one after another, in the order they were typed. */
  async pumpOutbox() {
    if (this.pumping) return;
    this.pumping = true;
    try {
      for (;;) {
        const connection = this.connection;
        if (!connection || this.status !== 'connected') return;
        const entry = this.outbox.find((candidate) => candidate.state === 'queued');
        if (!entry) return;
        entry.state = 'sending';
        this.changed('outbox');
        try {
          const answer = await connection.request('send', {
            to: entry.to,
            client_msg_id: entry.clientMsgId,
            body: entry.body,
          });
          this.ingest(
            {
              conversation_id: answer.conversation_id,
              seq: answer.seq,
              sender_id: this.me?.id ?? 0,
              sender_name: this.me?.name ?? '',
              target: entry.to,
              client_msg_id: entry.clientMsgId,
              body: entry.body,
              server_ts_ms: answer.server_ts_ms,
            },
            'sent',
          );
          // A duplicate answer describes a message already stored.
          this.outbox = this.outbox.filter((candidate) => candidate !== entry);
          this.saveOutbox();
        } catch (error) {
          if (error instanceof RequestError && error.code === 'unavailable') {
            // The outcome is unknown: resend the same id, a little later.
            entry.state = 'queued';
            await sleep(500);
          } else if (error instanceof RequestError && error.code !== 'rate_limited') {
            entry.state = 'failed';
            entry.error = error.message;
            this.saveOutbox();
          } else if (error instanceof RequestError) {
            entry.state = 'queued';
            await sleep(1000);
          } else {
            entry.state = 'queued';
            return;
          }
        }
        this.changed('outbox');
      }
    } finally {
      this.pumping = false;
    }
  }

  /**
   * Recalls a message (the sender's own within the window, or any as a group's owner or admin).
   * @param {Conversation} conversation
   * @param {number} seq
   */
  async recall(conversation, seq) {
    const answer = await this.request('recall', { conversation_id: conversation.id, seq });
    const message = conversation.messages.get(seq);
    if (message && answer.message) {
      message.recalled = answer.message.recalled;
      message.body = '';
    }
    if (conversation.lastMessage?.seq === seq) {
      conversation.lastMessage = { ...conversation.lastMessage, recalled: true, preview: '' };
    }
    this.changed('recall');
  }

  /**
   * Whether the user may recall a message now.
   * @param {Conversation} conversation
   * @param {ChatMessage} message
   */
  mayRecall(conversation, message) {
    if (!this.hasConversations || message.recalled || !this.me) return false;
    if (conversation.kind === 'group') {
      const role = this.groups.get(conversation.groupId ?? 0)?.my_role;
      if (role === 'owner' || role === 'admin') return true;
    }
    return message.sender_id === this.me.id && Date.now() - message.server_ts_ms < RECALL_WINDOW_MS;
  }

  /** @returns {OutboxEntry[]} */
  loadOutbox() {
    try {
      const entries = JSON.parse(this.storage.getItem(OUTBOX_KEY) ?? '[]');
      return Array.isArray(entries)
        ? entries.map((entry) => ({ ...entry, state: entry.state === 'failed' ? 'failed' : 'queued' }))
        : [];
    } catch {
      return [];
    }
  }

  saveOutbox() {
    this.storage.setItem(OUTBOX_KEY, JSON.stringify(this.outbox));
  }

  // ---- friends and groups ----

  /** Re-reads friends and requests. */
  async refreshFriends() {
    const answer = await this.request('friend_list', {});
    const known = new Set(this.friends.keys());
    this.friends = new Map(answer.friends.map((/** @type {Friend} */ friend) => [friend.id, friend]));
    this.incoming = answer.incoming_requests;
    this.outgoing = answer.outgoing_requests;
    for (const friend of this.friends.values()) {
      const conversation = this.ensureDirect(friend);
      // A new friendship is news: its conversation goes to the top.
      if (!known.has(friend.id) && !conversation.lastActivityMs) conversation.lastActivityMs = Date.now();
    }
    this.changed('friends');
  }

  /**
   * @param {string} name
   * @param {string} greeting
   */
  async addFriend(name, greeting) {
    const answer = await this.request('friend_add', { user: name, message: greeting || null });
    await this.refreshFriends();
    return answer;
  }

  /**
   * @param {number} userId
   * @param {boolean} accept
   */
  async respond(userId, accept) {
    await this.request('friend_respond', { user: userId, accept });
    await this.refreshFriends();
  }

  /** @param {number} userId */
  async removeFriend(userId) {
    await this.request('friend_remove', { user: userId });
    await this.refreshFriends();
  }

  /**
   * @param {number} userId
   * @param {string} remark
   * @param {string} category
   */
  async updateFriend(userId, remark, category) {
    const answer = await this.request('friend_update', { user: userId, remark, category });
    this.friends.set(answer.friend.id, answer.friend);
    this.ensureDirect(answer.friend);
    this.changed('friends');
  }

  /**
   * @param {string} name
   * @param {string} description
   * @returns {Promise<Group>}
   */
  async createGroup(name, description) {
    const answer = await this.request('group_create', { name, description });
    this.groups.set(answer.group.id, answer.group);
    this.ensureGroup(answer.group);
    this.changed('groups');
    return answer.group;
  }

  /**
   * @param {number} groupId
   * @returns {Promise<Group>}
   */
  async joinGroup(groupId) {
    const answer = await this.request('group_join', { group_id: groupId });
    this.groups.set(answer.group.id, answer.group);
    const conversation = this.ensureGroup(answer.group);
    conversation.lastActivityMs = Date.now();
    this.changed('groups');
    return answer.group;
  }

  /**
   * @param {number} groupId
   * @returns {Promise<Member[]>}
   */
  async loadMembers(groupId) {
    const answer = await this.request('group_members', { group_id: groupId });
    this.members.set(groupId, answer.members);
    return answer.members;
  }

  /**
   * Leave, dissolve, kick or change a role, then forget what changed.
   * @param {'group_leave' | 'group_dissolve' | 'group_kick' | 'group_set_role'} action
   * @param {{group_id: number, user?: number, role?: Role}} payload
   */
  async groupAction(action, payload) {
    await this.request(action, payload);
    this.members.delete(payload.group_id);
    if (action === 'group_leave' || action === 'group_dissolve') {
      const group = this.groups.get(payload.group_id);
      if (group) {
        this.groups.delete(group.id);
        this.conversations.delete(group.conversation_id);
        if (this.openConversationId === group.conversation_id) this.openConversationId = null;
      }
    } else {
      const answer = await this.request('group_info', { group_id: payload.group_id });
      this.groups.set(answer.group.id, answer.group);
    }
    this.changed('groups');
  }

  /** The total of unread messages, for the tab title. */
  totalUnread() {
    let total = 0;
    for (const conversation of this.conversations.values()) total += conversation.unread;
    return total;
  }

  /**
   * The conversations, newest activity first.
   * @returns {Conversation[]}
   */
  sortedConversations() {
    return [...this.conversations.values()].sort(
      (a, b) => b.lastActivityMs - a.lastActivityMs || b.id - a.id,
    );
  }

  /**
   * A user's display name: the remark for a friend, else the name.
   * @param {number} userId
   * @param {string} [fallback]
   */
  displayName(userId, fallback = `user #${userId}`) {
    if (userId === this.me?.id) return this.me.name;
    const friend = this.friends.get(userId);
    if (friend) return friend.remark || friend.name;
    for (const members of this.members.values()) {
      const member = members.find((candidate) => candidate.id === userId);
      if (member) return member.name;
    }
    return fallback;
  }
}
