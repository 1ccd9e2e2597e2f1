// The conversation pane: the messages grouped by day and sender, their
// states and read marks, older history on scroll, the jump to the newest,
// "typing…", and the composer (Enter sends, Shift+Enter adds a line).

import { dayKey, formatDay, formatTime, h, hue, initial, replace } from '../dom.js';
import { RequestError } from '../protocol.js';
import { showMembers } from './members.js';

/** @typedef {import('../client.js').ChatClient} ChatClient */
/** @typedef {import('../client.js').Conversation} Conversation */
/** @typedef {import('../client.js').ChatMessage} ChatMessage */

/** Messages from one sender closer together than this share one heading. */
const GROUP_GAP_MS = 5 * 60 * 1000;
/** Within this many pixels of the end counts as "at the newest". */
const NEAR_BOTTOM_PX = 48;

/**
 * An avatar: the initial on a colour of the name.
 * @param {string} name
 * @param {boolean | null} [online] a presence dot when not null
 */
export function avatar(name, online = null) {
  const element = h('span', { class: 'avatar', 'aria-hidden': 'true', text: initial(name) });
  element.style.setProperty('--hue', String(hue(name)));
  if (online !== null) element.append(h('span', { class: online ? 'dot online' : 'dot' }));
  return element;
}

/**
 * Makes `parent`'s children exactly `children`, moving and inserting only
 * where they differ (children already in place are not touched).
 * @param {Element} parent
 * @param {Node[]} children
 */
function patchChildren(parent, children) {
  let current = parent.firstChild;
  for (const child of children) {
    if (child === current) {
      current = current.nextSibling;
    } else {
      parent.insertBefore(child, current);
    }
  }
  while (current) {
    const next = current.nextSibling;
    parent.removeChild(current);
    current = next;
  }
}

export class ChatPane {
  /**
   * @param {ChatClient} client
   * @param {{onBack: () => void}} callbacks
   */
  constructor(client, callbacks) {
    this.client = client;
    this.callbacks = callbacks;
    /** @type {number | null} */
    this.shownId = null;
    /** @type {Map<string, {signature: string, element: HTMLElement}>} the message list's items by key */
    this.items = new Map();
    this.loadingOlder = false;
    this.title = h('h2', { class: 'chat-title', id: 'chat-title' });
    this.subtitle = h('p', { class: 'chat-subtitle', 'aria-live': 'polite' });
    this.headAvatar = h('span');
    this.membersButton = h('button', { type: 'button', class: 'button secondary small', hidden: true }, 'Members');
    this.membersButton.addEventListener('click', () => this.openMembers());
    const back = h('button', { type: 'button', class: 'icon-button back', 'aria-label': 'Back to conversations' }, '‹');
    back.addEventListener('click', () => callbacks.onBack());
    this.list = h('ol', { class: 'message-list' });
    this.older = h('button', { type: 'button', class: 'button secondary small older', hidden: true }, 'Load older messages');
    this.older.addEventListener('click', () => this.loadOlder());
    this.scroller = h(
      'div',
      { class: 'messages', role: 'log', 'aria-labelledby': 'chat-title', tabindex: 0 },
      this.older,
      this.list,
    );
    this.scroller.addEventListener('scroll', () => this.onScroll());
    this.jump = h('button', { type: 'button', class: 'jump', hidden: true }, 'Jump to newest ↓');
    this.jump.addEventListener('click', () => this.scrollToEnd());
    this.input = h('textarea', {
      id: 'composer-input',
      class: 'composer-input',
      rows: 1,
      placeholder: 'Write a message',
      'aria-describedby': 'composer-hint',
      maxlength: 4096,
    });
    this.input.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.submit();
      }
    });
    this.input.addEventListener('input', () => {
      this.autosize();
      const conversation = this.conversation();
      if (conversation && this.input.value.trim()) this.client.typing(conversation);
    });
    const sendButton = h('button', { type: 'submit', class: 'button primary send' }, 'Send');
    this.composer = h(
      'form',
      { class: 'composer', 'aria-label': 'Write a message' },
      h('label', { for: 'composer-input', class: 'visually-hidden', text: 'Message' }),
      this.input,
      sendButton,
      h('p', { id: 'composer-hint', class: 'visually-hidden', text: 'Enter sends, Shift+Enter starts a new line.' }),
    );
    this.composer.addEventListener('submit', (event) => {
      event.preventDefault();
      this.submit();
    });
    this.empty = h(
      'div',
      { class: 'chat-empty' },
      h('img', { src: '/icon.svg', alt: '', width: 64, height: 64 }),
      h('p', { text: 'Pick a conversation, or add a friend to start one.' }),
    );
    this.body = h(
      'div',
      { class: 'chat-body' },
      h('header', { class: 'chat-head' }, back, this.headAvatar, h('div', { class: 'chat-heading' }, this.title, this.subtitle), this.membersButton),
      h('div', { class: 'messages-wrap' }, this.scroller, this.jump),
      this.composer,
    );
    this.element = h('section', { class: 'chat', 'aria-label': 'Conversation' }, this.empty);
    // Escape leaves the conversation (dialogs handle their own Escape).
    this.body.addEventListener('keydown', (event) => {
      if (event.key === 'Escape' && !event.defaultPrevented) {
        event.preventDefault();
        callbacks.onBack();
      }
    });
    setInterval(() => this.renderSubtitle(), 1000);
  }

  /** @returns {Conversation | null} */
  conversation() {
    const id = this.client.openConversationId;
    return id === null ? null : (this.client.conversations.get(id) ?? null);
  }

  /** The name shown for a conversation. @param {Conversation} conversation */
  nameOf(conversation) {
    if (conversation.kind === 'group') {
      return this.client.groups.get(conversation.groupId ?? 0)?.name ?? conversation.title ?? 'Group';
    }
    const friend = this.client.friends.get(conversation.peerId ?? 0);
    return friend ? friend.remark || friend.name : conversation.title || 'Conversation';
  }

  /**
   * Re-renders for a change of the client's state.
   * @param {string} what
   */
  render(what) {
    const conversation = this.conversation();
    if (!conversation) {
      if (this.shownId !== null || !this.element.contains(this.empty)) replace(this.element, this.empty);
      this.shownId = null;
      return;
    }
    const switched = this.shownId !== conversation.id;
    if (switched) {
      replace(this.element, this.body);
      this.shownId = conversation.id;
      this.items = new Map();
      this.input.value = '';
      this.autosize();
    }
    replace(this.headAvatar, avatar(this.nameOf(conversation), this.presence(conversation)));
    this.title.textContent = this.nameOf(conversation);
    this.membersButton.hidden = conversation.kind !== 'group';
    this.renderSubtitle();
    this.renderMessages(conversation, switched ? 'switched' : what);
    if (switched) this.input.focus();
  }

  /** @param {Conversation} conversation */
  presence(conversation) {
    if (conversation.kind !== 'direct') return null;
    return this.client.friends.get(conversation.peerId ?? 0)?.online ?? false;
  }

  renderSubtitle() {
    const conversation = this.conversation();
    if (!conversation) return;
    const typists = this.client.typists(conversation);
    let text;
    if (typists.length > 0) {
      const names = typists.map((id) => this.client.displayName(id));
      text = conversation.kind === 'direct' ? 'typing…' : `${names.join(', ')} ${typists.length > 1 ? 'are' : 'is'} typing…`;
    } else if (conversation.kind === 'group') {
      const group = this.client.groups.get(conversation.groupId ?? 0);
      text = group ? `Group #${group.id} · ${group.member_count} member${group.member_count === 1 ? '' : 's'}` : '';
    } else {
      const friend = this.client.friends.get(conversation.peerId ?? 0);
      text = friend ? (friend.online ? 'online' : 'offline') : 'not a friend any more';
    }
    if (this.subtitle.textContent !== text) this.subtitle.textContent = text;
    this.subtitle.classList.toggle('typing', typists.length > 0);
  }

  /**
   * @param {Conversation} conversation
   * @param {string} what
   */
  renderMessages(conversation, what) {
    const scroller = this.scroller;
    const wasAtEnd = this.atEnd();
    const fromBottom = scroller.scrollHeight - scroller.scrollTop;
    const previousTop = scroller.scrollTop;
    const focusKey = document.activeElement instanceof HTMLElement ? document.activeElement.dataset.focusKey : undefined;

    const me = this.client.me?.id;
    const messages = [...conversation.messages.values()].sort((a, b) => a.seq - b.seq);
    const pending = this.client.outbox.filter((entry) => entry.conversationId === conversation.id);
    // Items are kept by key and rebuilt only when what they show changed,
    // and the list is patched in place: a screen reader's log announces
    // only what is new, and nothing the user focused is thrown away.
    /** @type {Map<string, {signature: string, element: HTMLElement}>} */
    const kept = new Map();
    /** @type {HTMLElement[]} */
    const items = [];
    /**
     * @param {string} key
     * @param {string} signature everything the item shows
     * @param {() => HTMLElement} build
     */
    const item = (key, signature, build) => {
      const cached = this.items.get(key);
      const element = cached && cached.signature === signature ? cached.element : build();
      kept.set(key, { signature, element });
      items.push(element);
    };
    let lastDay = '';
    let lastSender = -1;
    let lastTime = 0;
    for (const message of messages) {
      const day = dayKey(message.server_ts_ms);
      if (day !== lastDay) {
        const label = formatDay(message.server_ts_ms);
        item(`day-${day}`, label, () => h('li', { class: 'day' }, h('span', { text: label })));
        lastDay = day;
        lastSender = -1;
      }
      const first = message.sender_id !== lastSender || message.server_ts_ms - lastTime > GROUP_GAP_MS;
      const mine = message.sender_id === me;
      const signature = JSON.stringify([
        first,
        message.body,
        message.recalled ?? null,
        mine ? this.readText(conversation, message) : '',
        this.client.mayRecall(conversation, message),
        this.client.displayName(message.sender_id, message.sender_name),
      ]);
      item(`message-${message.seq}`, signature, () => this.messageItem(conversation, message, first, mine));
      lastSender = message.sender_id;
      lastTime = message.server_ts_ms;
    }
    for (const entry of pending) {
      const first = lastSender !== me;
      const signature = JSON.stringify([first, entry.state, entry.error ?? '', this.client.status === 'connected']);
      item(`pending-${entry.clientMsgId}`, signature, () => this.pendingItem(entry, first));
      lastSender = me ?? -1;
    }
    if (items.length === 0) {
      const text = conversation.historyLoaded ? 'No messages yet. Say hello!' : 'Loading…';
      item('empty', text, () => h('li', { class: 'no-messages', text }));
    }
    this.items = kept;
    patchChildren(this.list, items);
    this.older.hidden = !conversation.hasOlder;

    if (what === 'switched' || what === 'sent' || (wasAtEnd && what !== 'older')) {
      this.scrollToEnd();
    } else if (what === 'older') {
      scroller.scrollTop = scroller.scrollHeight - fromBottom;
    } else {
      scroller.scrollTop = previousTop;
    }
    if (focusKey) {
      const again = this.list.querySelector(`[data-focus-key="${CSS.escape(focusKey)}"]`);
      if (again instanceof HTMLElement) again.focus();
    }
    this.updateJump();
  }

  /**
   * @param {Conversation} conversation
   * @param {ChatMessage} message
   * @param {boolean} first whether it starts a run of one sender's messages
   * @param {boolean} mine
   */
  messageItem(conversation, message, first, mine) {
    const classes = ['message', mine ? 'mine' : 'theirs'];
    if (first) classes.push('first');
    const when = new Date(message.server_ts_ms);
    /** @type {Node[]} */
    const meta = [h('time', { datetime: when.toISOString(), title: when.toLocaleString(), text: formatTime(message.server_ts_ms) })];
    let body;
    if (message.recalled) {
      classes.push('recalled');
      const by = message.recalled.by === message.sender_id ? '' : ` by ${this.client.displayName(message.recalled.by)}`;
      body = h('p', { class: 'body', text: mine && !by ? 'You recalled this message' : `This message was recalled${by}` });
    } else if (message.client_msg_id.startsWith('erased:')) {
      classes.push('recalled');
      body = h('p', { class: 'body', text: 'Message deleted' });
    } else {
      body = h('p', { class: 'body', text: message.body });
    }
    if (mine) meta.push(this.readMark(conversation, message));
    if (this.client.mayRecall(conversation, message)) {
      const key = `recall-${conversation.id}-${message.seq}`;
      const recall = h('button', { type: 'button', class: 'link-button', dataset: { focusKey: key }, 'aria-label': 'Recall this message' }, 'Recall');
      recall.addEventListener('click', async () => {
        try {
          await this.client.recall(conversation, message.seq);
        } catch (error) {
          this.flash(error instanceof RequestError && error.code === 'forbidden' ? 'Too late to recall that message.' : 'Could not recall the message.');
        }
      });
      meta.push(recall);
    }
    const showName = first && !mine && conversation.kind === 'group';
    return h(
      'li',
      { class: classes.join(' '), dataset: { seq: String(message.seq) } },
      showName ? h('span', { class: 'sender', text: this.client.displayName(message.sender_id, message.sender_name) }) : null,
      h('div', { class: 'bubble' }, body),
      h('div', { class: 'meta' }, ...meta),
    );
  }

  /**
   * "Sent", "Read" (direct) or "Read by N" (group) for one's own message.
   * @param {Conversation} conversation
   * @param {ChatMessage} message
   */
  readMark(conversation, message) {
    const text = this.readText(conversation, message);
    const readers = this.readers(conversation, message).map((id) => this.client.displayName(id));
    return h('span', {
      class: text.includes('Read') ? 'state read' : 'state sent',
      title: conversation.kind === 'group' && readers.length ? `Read by ${readers.join(', ')}` : null,
      text,
    });
  }

  /**
   * Who (besides the sender) has read up to a message.
   * @param {Conversation} conversation
   * @param {ChatMessage} message
   * @returns {number[]}
   */
  readers(conversation, message) {
    const readers = [];
    for (const [user, seq] of conversation.readPositions) if (user !== message.sender_id && seq >= message.seq) readers.push(user);
    return readers;
  }

  /**
   * @param {Conversation} conversation
   * @param {ChatMessage} message
   */
  readText(conversation, message) {
    if (conversation.kind === 'direct') {
      const read = (conversation.readPositions.get(conversation.peerId ?? 0) ?? 0) >= message.seq;
      return read ? '✓✓ Read' : '✓ Sent';
    }
    const readers = this.readers(conversation, message).length;
    return readers ? `✓✓ Read by ${readers}` : '✓ Sent';
  }

  /**
   * A message of the outbox: sending, waiting for the connection, or failed.
   * @param {import('../client.js').OutboxEntry} entry
   * @param {boolean} first
   */
  pendingItem(entry, first) {
    /** @type {Node[]} */
    const meta = [];
    if (entry.state === 'failed') {
      meta.push(h('span', { class: 'state failed', text: `Not sent${entry.error ? `: ${entry.error}` : ''}` }));
      const retry = h('button', { type: 'button', class: 'link-button', dataset: { focusKey: `retry-${entry.clientMsgId}` } }, 'Retry');
      retry.addEventListener('click', () => this.client.retry(entry.clientMsgId));
      const discard = h('button', { type: 'button', class: 'link-button' }, 'Delete');
      discard.addEventListener('click', () => this.client.discard(entry.clientMsgId));
      meta.push(retry, discard);
    } else {
      const waiting = this.client.status !== 'connected';
      meta.push(h('span', { class: 'state sending', text: waiting ? '◷ Waiting for connection' : '◷ Sending…' }));
    }
    return h(
      'li',
      { class: `message mine pending${first ? ' first' : ''}${entry.state === 'failed' ? ' failed' : ''}` },
      h('div', { class: 'bubble' }, h('p', { class: 'body', text: entry.body })),
      h('div', { class: 'meta' }, ...meta),
    );
  }

  atEnd() {
    const scroller = this.scroller;
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < NEAR_BOTTOM_PX;
  }

  /** Shows the newest message (at once: a smooth scroll would race new arrivals). */
  scrollToEnd() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
    this.updateJump();
    const conversation = this.conversation();
    if (conversation && !document.hidden) this.client.markRead(conversation);
  }

  updateJump() {
    const atEnd = this.atEnd();
    this.jump.hidden = atEnd;
    const conversation = this.conversation();
    const unread = conversation && !atEnd ? conversation.unread : 0;
    this.jump.textContent = unread > 0 ? `${unread} new ↓` : 'Jump to newest ↓';
  }

  onScroll() {
    this.updateJump();
    const conversation = this.conversation();
    if (!conversation) return;
    if (this.atEnd() && !document.hidden) this.client.markRead(conversation);
    if (this.scroller.scrollTop < 40 && conversation.hasOlder) this.loadOlder();
  }

  async loadOlder() {
    const conversation = this.conversation();
    if (!conversation || this.loadingOlder) return;
    this.loadingOlder = true;
    try {
      await this.client.loadOlder(conversation);
    } catch {
      this.flash('Could not load older messages.');
    } finally {
      this.loadingOlder = false;
    }
  }

  submit() {
    const conversation = this.conversation();
    const text = this.input.value;
    if (!conversation || !text.trim()) return;
    if (new TextEncoder().encode(text).length > 4096) {
      this.flash('That message is too long (4096 bytes at most).');
      return;
    }
    this.input.value = '';
    this.autosize();
    this.client.send(conversation, text);
    this.renderMessages(conversation, 'sent');
  }

  autosize() {
    this.input.style.height = 'auto';
    this.input.style.height = `${Math.min(this.input.scrollHeight, 160)}px`;
  }

  /** @param {string} text */
  flash(text) {
    this.subtitle.textContent = text;
  }

  async openMembers() {
    const conversation = this.conversation();
    if (!conversation || conversation.groupId === null) return;
    await showMembers(this.client, conversation.groupId);
  }
}
