// The application shell: the sign-in screen or the signed-in layout (top
// bar with the connection state, a sidebar with chats, friends and groups,
// and the conversation pane), the tab title's unread count and desktop
// notifications.

import { formatShort, h, replace } from '../dom.js';
import { RequestError } from '../protocol.js';
import { avatar, ChatPane } from './chat.js';
import { confirmDialog, openDialog } from './dialogs.js';
import { renderSignIn } from './signin.js';

/** @typedef {import('../client.js').ChatClient} ChatClient */
/** @typedef {import('../client.js').Conversation} Conversation */
/** @typedef {'chats' | 'friends' | 'groups'} Tab */

const STATUS_TEXT = {
  'signed-out': 'Offline',
  connecting: 'Connecting…',
  connected: 'Connected',
  reconnecting: 'Reconnecting…',
};

/**
 * A sentence for a failed request.
 * @param {unknown} error
 */
function explain(error) {
  if (error instanceof RequestError) {
    if (error.code === 'not_found') return 'Not found. Check the name or id.';
    return error.message;
  }
  return 'Not connected. Try again in a moment.';
}

export class App {
  /**
   * @param {HTMLElement} root
   * @param {ChatClient} client
   */
  constructor(root, client) {
    this.root = root;
    this.client = client;
    /** @type {'none' | 'signin' | 'splash' | 'main'} */
    this.screen = 'none';
    /** @type {Tab} */
    this.tab = 'chats';
    this.chat = new ChatPane(client, {
      onBack: () => {
        const left = client.openConversationId;
        this.openConversation(null);
        // Back in the list, on the conversation just left.
        requestAnimationFrame(() => {
          const row = this.panel.querySelector(`[data-focus-key="conversation-${left}"]`);
          if (row instanceof HTMLElement) row.focus();
        });
      },
    });
    this.statusBadge = h('span', { class: 'status', role: 'status' });
    this.meName = h('span', { class: 'me-name' });
    this.notifyButton = h(
      'button',
      { type: 'button', class: 'button secondary small', hidden: true, title: 'Show a desktop notification when a message arrives while this tab is hidden' },
      'Notifications',
    );
    this.notifyButton.addEventListener('click', async () => {
      await Notification.requestPermission();
      this.renderTopbar();
    });
    const signOut = h('button', { type: 'button', class: 'button secondary small' }, 'Sign out');
    signOut.addEventListener('click', () => this.client.signOut());
    this.tabButtons = /** @type {Record<Tab, HTMLButtonElement>} */ ({});
    for (const [tab, label] of /** @type {[Tab, string][]} */ ([
      ['chats', 'Chats'],
      ['friends', 'Friends'],
      ['groups', 'Groups'],
    ])) {
      const button = h('button', { type: 'button', class: 'tab', 'aria-pressed': 'false', dataset: { tab } }, label);
      button.addEventListener('click', () => {
        this.tab = tab;
        this.renderSidebar();
      });
      this.tabButtons[tab] = button;
    }
    this.panel = h('div', { class: 'panel' });
    this.sidebar = h(
      'nav',
      { class: 'sidebar', 'aria-label': 'Chats, friends and groups' },
      h('div', { class: 'tabs', role: 'group', 'aria-label': 'Show' }, ...Object.values(this.tabButtons)),
      this.panel,
    );
    this.shell = h(
      'div',
      { class: 'shell' },
      h(
        'header',
        { class: 'topbar' },
        h('div', { class: 'brand' }, h('img', { src: '/icon.svg', alt: '', width: 28, height: 28 }), h('span', { text: 'chatd' })),
        this.statusBadge,
        h('div', { class: 'topbar-end' }, this.meName, this.notifyButton, signOut),
      ),
      h('div', { class: 'layout' }, this.sidebar, this.chat.element),
    );
    /** Inputs of the sidebar forms, kept across re-renders. */
    this.forms = this.buildForms();
    this.pendingRender = false;
    /** @type {Set<string>} */
    this.reasons = new Set();
  }

  start() {
    this.client.addEventListener('change', (event) => this.schedule(/** @type {CustomEvent} */ (event).detail));
    this.client.addEventListener('arrived', () => this.onArrived());
    this.client.addEventListener('message', (event) => this.notify(/** @type {CustomEvent} */ (event).detail));
    window.addEventListener('online', () => this.client.retryNow());
    document.addEventListener('visibilitychange', () => {
      const conversation = this.chat.conversation();
      if (!document.hidden && conversation && this.chat.atEnd()) this.client.markRead(conversation);
    });
    if (this.client.hasToken()) {
      this.client.resume();
    }
    this.render('start');
  }

  /**
   * Renders once per animation frame, however many changes came in.
   * @param {string} what
   */
  schedule(what) {
    this.reasons.add(what);
    if (this.pendingRender) return;
    this.pendingRender = true;
    requestAnimationFrame(() => {
      this.pendingRender = false;
      const reasons = [...this.reasons];
      this.reasons.clear();
      this.render(reasons.includes('older') ? 'older' : reasons.join(','));
    });
  }

  /** @param {string} what */
  render(what) {
    const client = this.client;
    let screen;
    if (client.me) screen = 'main';
    else if (client.status === 'signed-out') screen = 'signin';
    else screen = 'splash';
    if (screen !== this.screen) {
      this.screen = /** @type {'signin' | 'splash' | 'main'} */ (screen);
      if (screen === 'signin') {
        renderSignIn(this.root, client);
      } else if (screen === 'splash') {
        replace(this.root, h('main', { class: 'splash', 'aria-busy': 'true' }, h('img', { src: '/icon.svg', alt: '', width: 48, height: 48 }), h('p', { text: 'Connecting…' })));
      } else {
        replace(this.root, this.shell);
      }
    }
    this.renderTopbar();
    document.title = client.totalUnread() > 0 ? `(${client.totalUnread()}) chatd` : 'chatd';
    if (screen !== 'main') return;
    this.shell.dataset.pane = client.openConversationId === null ? 'list' : 'chat';
    this.renderSidebar();
    this.chat.render(what);
  }

  renderTopbar() {
    const status = this.client.status;
    this.statusBadge.dataset.status = status;
    this.statusBadge.textContent = STATUS_TEXT[status];
    this.meName.textContent = this.client.me ? this.client.me.name : '';
    this.notifyButton.hidden = !('Notification' in window) || Notification.permission !== 'default';
  }

  onArrived() {
    const conversation = this.chat.conversation();
    if (conversation && !document.hidden && this.chat.atEnd()) this.client.markRead(conversation);
  }

  /** @param {import('../client.js').ChatMessage} message */
  notify(message) {
    if (!document.hidden || !('Notification' in window) || Notification.permission !== 'granted') return;
    const name = this.client.displayName(message.sender_id, message.sender_name);
    const notification = new Notification(name, { body: message.body.slice(0, 200), tag: `conversation-${message.conversation_id}` });
    notification.addEventListener('click', () => {
      window.focus();
      this.openConversation(message.conversation_id);
    });
  }

  /** @param {number | null} conversationId */
  openConversation(conversationId) {
    this.tab = 'chats';
    this.client.open(conversationId);
  }

  renderSidebar() {
    for (const [tab, button] of Object.entries(this.tabButtons)) {
      button.setAttribute('aria-pressed', String(tab === this.tab));
    }
    const incoming = this.client.incoming.length;
    const friendsButton = this.tabButtons.friends;
    replace(friendsButton, 'Friends', incoming ? h('span', { class: 'badge', 'aria-label': `${incoming} new requests`, text: String(incoming) }) : null);
    const unread = this.client.totalUnread();
    replace(this.tabButtons.chats, 'Chats', unread ? h('span', { class: 'badge', 'aria-label': `${unread} unread`, text: String(unread) }) : null);
    // Re-rendering must not take the focus (or the caret) from the user:
    // the forms are the same elements again, list rows are found by key.
    const active = document.activeElement;
    const focusKey = active instanceof HTMLElement ? active.dataset.focusKey : undefined;
    const caret =
      active instanceof HTMLInputElement ? [active.selectionStart, active.selectionEnd] : null;
    const scrollTop = this.panel.scrollTop;
    if (this.tab === 'chats') replace(this.panel, this.chatsPanel());
    else if (this.tab === 'friends') replace(this.panel, this.friendsPanel());
    else replace(this.panel, this.groupsPanel());
    this.panel.scrollTop = scrollTop;
    if (focusKey) {
      const again = this.panel.querySelector(`[data-focus-key="${CSS.escape(focusKey)}"]`);
      if (again instanceof HTMLElement) again.focus({ preventScroll: true });
    } else if (active instanceof HTMLElement && active.isConnected && active !== document.activeElement) {
      active.focus({ preventScroll: true });
      if (active instanceof HTMLInputElement && caret) {
        try {
          active.setSelectionRange(caret[0], caret[1]);
        } catch {
          // Inputs without a caret (numbers) keep theirs.
        }
      }
    }
  }

  chatsPanel() {
    const conversations = this.client.sortedConversations();
    if (conversations.length === 0) {
      return h('p', { class: 'panel-empty', text: 'No conversations yet. Add a friend or join a group to start chatting.' });
    }
    return h(
      'ul',
      { class: 'conversation-list', 'aria-label': 'Conversations' },
      ...conversations.map((conversation) => this.conversationRow(conversation)),
    );
  }

  /** @param {Conversation} conversation */
  conversationRow(conversation) {
    const name = this.chat.nameOf(conversation);
    const last = conversation.lastMessage;
    const me = this.client.me?.id;
    let preview = '';
    if (this.client.typists(conversation).length > 0) preview = 'typing…';
    else if (last?.recalled) preview = 'Message recalled';
    else if (last) {
      const who = last.sender_id === me ? 'You: ' : conversation.kind === 'group' ? `${this.client.displayName(last.sender_id, last.sender_name)}: ` : '';
      preview = who + last.preview.replace(/\s+/g, ' ');
    } else preview = conversation.kind === 'group' ? 'Group created' : 'No messages yet';
    const selected = this.client.openConversationId === conversation.id;
    const button = h(
      'button',
      {
        type: 'button',
        class: 'conversation',
        'aria-current': selected ? 'true' : null,
        dataset: { focusKey: `conversation-${conversation.id}`, conversationId: String(conversation.id) },
      },
      avatar(name, this.chat.presence(conversation)),
      h(
        'span',
        { class: 'conversation-text' },
        h('span', { class: 'conversation-top' }, h('span', { class: 'conversation-name', text: name }), last ? h('time', { class: 'conversation-time', text: formatShort(last.server_ts_ms) }) : null),
        h(
          'span',
          { class: 'conversation-bottom' },
          h('span', { class: 'conversation-preview', text: preview }),
          conversation.unread > 0 ? h('span', { class: 'badge', 'aria-label': `${conversation.unread} unread`, text: String(conversation.unread) }) : null,
        ),
      ),
    );
    button.addEventListener('click', () => this.openConversation(conversation.id));
    return h('li', {}, button);
  }

  /** The sidebar forms, built once so what the user typed survives re-renders. */
  buildForms() {
    const addName = h('input', { id: 'add-friend-name', required: true, maxlength: 32, autocomplete: 'off', autocapitalize: 'none' });
    const addGreeting = h('input', { id: 'add-friend-greeting', maxlength: 256, autocomplete: 'off' });
    const addStatus = h('p', { class: 'form-status', role: 'status' });
    const addFriend = h(
      'form',
      { class: 'card-form', 'aria-label': 'Add a friend' },
      h('h3', { text: 'Add a friend' }),
      h('div', { class: 'field' }, h('label', { for: 'add-friend-name', text: 'Name' }), addName),
      h('div', { class: 'field' }, h('label', { for: 'add-friend-greeting', text: 'Greeting (optional)' }), addGreeting),
      h('button', { type: 'submit', class: 'button primary' }, 'Send request'),
      addStatus,
    );
    addFriend.addEventListener('submit', async (event) => {
      event.preventDefault();
      addStatus.textContent = '';
      try {
        const answer = await this.client.addFriend(addName.value.trim(), addGreeting.value.trim());
        addStatus.textContent =
          answer.outcome === 'accepted' ? `You and ${answer.user.name} are friends now.` : `Request sent to ${answer.user.name}.`;
        addName.value = '';
        addGreeting.value = '';
      } catch (error) {
        addStatus.textContent =
          error instanceof RequestError && error.code === 'conflict' ? 'Already friends, or a request is already pending.' : explain(error);
      }
    });

    const groupName = h('input', { id: 'create-group-name', required: true, maxlength: 64, autocomplete: 'off' });
    const groupDescription = h('input', { id: 'create-group-description', maxlength: 512, autocomplete: 'off' });
    const createStatus = h('p', { class: 'form-status', role: 'status' });
    const createGroup = h(
      'form',
      { class: 'card-form', 'aria-label': 'Create a group' },
      h('h3', { text: 'Create a group' }),
      h('div', { class: 'field' }, h('label', { for: 'create-group-name', text: 'Group name' }), groupName),
      h('div', { class: 'field' }, h('label', { for: 'create-group-description', text: 'Description (optional)' }), groupDescription),
      h('button', { type: 'submit', class: 'button primary' }, 'Create group'),
      createStatus,
    );
    createGroup.addEventListener('submit', async (event) => {
      event.preventDefault();
      createStatus.textContent = '';
      try {
        const group = await this.client.createGroup(groupName.value.trim(), groupDescription.value.trim());
        groupName.value = '';
        groupDescription.value = '';
        this.openConversation(group.conversation_id);
      } catch (error) {
        createStatus.textContent = explain(error);
      }
    });

    const joinId = h('input', { id: 'join-group-id', required: true, inputmode: 'numeric', pattern: '[0-9]+', autocomplete: 'off' });
    const joinStatus = h('p', { class: 'form-status', role: 'status' });
    const joinGroup = h(
      'form',
      { class: 'card-form', 'aria-label': 'Join a group' },
      h('h3', { text: 'Join a group' }),
      h('div', { class: 'field' }, h('label', { for: 'join-group-id', text: 'Group id' }), joinId),
      h('button', { type: 'submit', class: 'button primary' }, 'Join'),
      joinStatus,
    );
    joinGroup.addEventListener('submit', async (event) => {
      event.preventDefault();
      joinStatus.textContent = '';
      try {
        const group = await this.client.joinGroup(Number(joinId.value));
        joinId.value = '';
        this.openConversation(group.conversation_id);
      } catch (error) {
        joinStatus.textContent =
          error instanceof RequestError && error.code === 'conflict' ? 'You are already a member.' : explain(error);
      }
    });
    return { addFriend, createGroup, joinGroup };
  }

  friendsPanel() {
    const client = this.client;
    /** @type {Node[]} */
    const sections = [this.forms.addFriend];
    if (client.incoming.length > 0) {
      sections.push(
        h('h3', { class: 'section-title', text: 'Friend requests' }),
        h(
          'ul',
          { class: 'request-list', 'aria-label': 'Friend requests' },
          ...client.incoming.map((request) =>
            h(
              'li',
              { class: 'request' },
              avatar(request.from.name),
              h(
                'span',
                { class: 'request-text' },
                h('strong', { text: request.from.name }),
                request.message ? h('span', { class: 'greeting', text: request.message }) : null,
              ),
              h(
                'span',
                { class: 'request-actions' },
                h('button', {
                  type: 'button',
                  class: 'button primary small',
                  'aria-label': `Accept ${request.from.name}`,
                  text: 'Accept',
                  onclick: () => client.respond(request.from.id, true).catch(() => {}),
                }),
                h('button', {
                  type: 'button',
                  class: 'button secondary small',
                  'aria-label': `Decline ${request.from.name}`,
                  text: 'Decline',
                  onclick: () => client.respond(request.from.id, false).catch(() => {}),
                }),
              ),
            ),
          ),
        ),
      );
    }
    if (client.outgoing.length > 0) {
      sections.push(
        h('h3', { class: 'section-title', text: 'Waiting for an answer' }),
        h(
          'ul',
          { class: 'request-list', 'aria-label': 'Requests sent' },
          ...client.outgoing.map((request) =>
            h('li', { class: 'request' }, avatar(request.to.name), h('span', { class: 'request-text' }, h('strong', { text: request.to.name }), h('span', { class: 'greeting', text: 'Request sent' }))),
          ),
        ),
      );
    }
    /** @type {Map<string, import('../client.js').Friend[]>} */
    const byCategory = new Map();
    for (const friend of client.friends.values()) {
      const category = friend.category || '';
      byCategory.set(category, [...(byCategory.get(category) ?? []), friend]);
    }
    const categories = [...byCategory.keys()].sort((a, b) => (a === '' ? 1 : b === '' ? -1 : a.localeCompare(b)));
    if (categories.length === 0) sections.push(h('p', { class: 'panel-empty', text: 'No friends yet.' }));
    for (const category of categories) {
      const friends = (byCategory.get(category) ?? []).sort((a, b) => (a.remark || a.name).localeCompare(b.remark || b.name));
      sections.push(
        h('h3', { class: 'section-title', text: category || (categories.length > 1 ? 'Other friends' : 'Friends') }),
        h(
          'ul',
          { class: 'friend-list', 'aria-label': category ? `Friends in ${category}` : 'Friends' },
          ...friends.map((friend) => {
            const label = friend.remark ? `${friend.remark} (${friend.name})` : friend.name;
            return h(
              'li',
              { class: 'friend' },
              avatar(friend.remark || friend.name, friend.online),
              h('span', { class: 'friend-name', text: label }),
              h('span', { class: 'visually-hidden', text: friend.online ? 'online' : 'offline' }),
              h(
                'span',
                { class: 'friend-actions' },
                h('button', {
                  type: 'button',
                  class: 'button primary small',
                  'aria-label': `Chat with ${friend.name}`,
                  text: 'Chat',
                  onclick: () => this.openConversation(friend.conversation_id),
                }),
                h('button', {
                  type: 'button',
                  class: 'button secondary small',
                  'aria-label': `Edit ${friend.name}`,
                  text: 'Edit',
                  onclick: () => this.editFriend(friend),
                }),
                h('button', {
                  type: 'button',
                  class: 'button danger small',
                  'aria-label': `Remove ${friend.name}`,
                  text: 'Remove',
                  onclick: async () => {
                    if (await confirmDialog('Remove friend', `Remove ${friend.name} from your friends?`, 'Remove')) {
                      await client.removeFriend(friend.id).catch(() => {});
                    }
                  },
                }),
              ),
            );
          }),
        ),
      );
    }
    return h('div', { class: 'panel-stack' }, ...sections);
  }

  /** @param {import('../client.js').Friend} friend */
  async editFriend(friend) {
    const remark = h('input', { id: 'edit-remark', maxlength: 64, value: friend.remark ?? '' });
    const category = h('input', { id: 'edit-category', maxlength: 64, value: friend.category ?? '', list: 'known-categories' });
    const known = [...new Set([...this.client.friends.values()].map((each) => each.category).filter(Boolean))];
    const error = h('p', { class: 'form-error', role: 'alert' });
    await openDialog(`Edit ${friend.name}`, (close) => {
      const form = h(
        'form',
        { class: 'dialog-form' },
        h('div', { class: 'field' }, h('label', { for: 'edit-remark', text: 'Remark (a name only you see)' }), remark),
        h('div', { class: 'field' }, h('label', { for: 'edit-category', text: 'Category' }), category),
        h('datalist', { id: 'known-categories' }, ...known.map((name) => h('option', { value: name ?? '' }))),
        error,
        h(
          'div',
          { class: 'dialog-actions' },
          h('button', { type: 'button', class: 'button secondary', onclick: () => close(null) }, 'Cancel'),
          h('button', { type: 'submit', class: 'button primary' }, 'Save'),
        ),
      );
      form.addEventListener('submit', async (event) => {
        event.preventDefault();
        try {
          await this.client.updateFriend(friend.id, remark.value.trim(), category.value.trim());
          close(true);
        } catch (failure) {
          error.textContent = explain(failure);
        }
      });
      return [form];
    });
  }

  groupsPanel() {
    const groups = [...this.client.groups.values()].sort((a, b) => a.name.localeCompare(b.name));
    return h(
      'div',
      { class: 'panel-stack' },
      this.forms.createGroup,
      this.forms.joinGroup,
      h('h3', { class: 'section-title', text: 'Your groups' }),
      groups.length === 0
        ? h('p', { class: 'panel-empty', text: 'No groups yet.' })
        : h(
            'ul',
            { class: 'group-list', 'aria-label': 'Your groups' },
            ...groups.map((group) => {
              const button = h(
                'button',
                { type: 'button', class: 'conversation', dataset: { focusKey: `group-${group.id}` } },
                avatar(group.name),
                h(
                  'span',
                  { class: 'conversation-text' },
                  h('span', { class: 'conversation-name', text: group.name }),
                  h('span', { class: 'conversation-preview', text: `#${group.id} · ${group.my_role ?? ''} · ${group.member_count} member${group.member_count === 1 ? '' : 's'}` }),
                ),
              );
              button.addEventListener('click', () => this.openConversation(group.conversation_id));
              return h('li', {}, button);
            }),
          ),
    );
  }
}
