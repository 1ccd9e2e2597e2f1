// The group dialog: its id to share, the members with role and presence,
// and what the user's role allows (kick, set role, leave, dissolve).

import { h, replace } from '../dom.js';
import { confirmDialog, openDialog } from './dialogs.js';

/** @typedef {import('../client.js').ChatClient} ChatClient */
/** @typedef {import('../client.js').Member} Member */

/**
 * Shows the members of a group and the actions on them.
 * @param {ChatClient} client
 * @param {number} groupId
 */
export async function showMembers(client, groupId) {
  const group = client.groups.get(groupId);
  if (!group) return;
  const list = h('ul', { class: 'member-list', 'aria-label': 'Members' }, h('li', { text: 'Loading…' }));
  const status = h('p', { class: 'form-error', role: 'alert' });
  /** @type {(value: null) => void} */
  let closeDialog = () => {};

  /**
   * Runs an action, then shows the list again.
   * @param {() => Promise<unknown>} action
   */
  const act = async (action) => {
    status.textContent = '';
    try {
      await action();
      await refresh();
    } catch (error) {
      status.textContent = error instanceof Error ? error.message : String(error);
    }
  };

  /** @param {Member} member */
  const row = (member) => {
    const current = client.groups.get(groupId);
    const myRole = current?.my_role;
    const isMe = member.id === client.me?.id;
    /** @type {Node[]} */
    const actions = [];
    if (!isMe && myRole === 'owner') {
      const select = h(
        'select',
        { 'aria-label': `Role of ${member.name}` },
        ...['member', 'admin', 'owner'].map((role) => h('option', { value: role, selected: role === member.role, text: role })),
      );
      select.addEventListener('change', () => {
        const role = /** @type {import('../client.js').Role} */ (select.value);
        act(async () => {
          if (role === 'owner' && !(await confirmDialog('Hand over the group', `Make ${member.name} the owner? You become an admin.`, 'Hand over'))) return;
          await client.groupAction('group_set_role', { group_id: groupId, user: member.id, role });
        });
      });
      actions.push(select);
    }
    const mayKick = !isMe && (myRole === 'owner' || (myRole === 'admin' && member.role === 'member'));
    if (mayKick) {
      actions.push(
        h(
          'button',
          {
            type: 'button',
            class: 'button danger small',
            'aria-label': `Remove ${member.name} from the group`,
            onclick: () =>
              act(async () => {
                if (await confirmDialog('Remove member', `Remove ${member.name} from ${group.name}?`, 'Remove')) {
                  await client.groupAction('group_kick', { group_id: groupId, user: member.id });
                }
              }),
          },
          'Remove',
        ),
      );
    }
    return h(
      'li',
      { class: 'member' },
      h('span', { class: member.online ? 'dot online' : 'dot', 'aria-hidden': 'true' }),
      h('span', { class: 'member-name', text: isMe ? `${member.name} (you)` : member.name }),
      h('span', { class: `role role-${member.role}`, text: member.role }),
      h('span', { class: 'visually-hidden', text: member.online ? 'online' : 'offline' }),
      h('span', { class: 'member-actions' }, ...actions),
    );
  };

  const refresh = async () => {
    if (!client.groups.has(groupId)) {
      closeDialog(null);
      return;
    }
    const members = await client.loadMembers(groupId);
    replace(list, ...members.map(row));
  };

  const leaveOrDissolve = () => {
    const role = client.groups.get(groupId)?.my_role;
    if (role === 'owner') {
      return h(
        'button',
        {
          type: 'button',
          class: 'button danger',
          onclick: () =>
            act(async () => {
              if (await confirmDialog('Dissolve group', `Dissolve ${group.name} for everyone? Its messages are gone for good.`, 'Dissolve')) {
                await client.groupAction('group_dissolve', { group_id: groupId });
              }
            }),
        },
        'Dissolve group',
      );
    }
    return h(
      'button',
      {
        type: 'button',
        class: 'button danger',
        onclick: () =>
          act(async () => {
            if (await confirmDialog('Leave group', `Leave ${group.name}?`, 'Leave')) {
              await client.groupAction('group_leave', { group_id: groupId });
            }
          }),
      },
      'Leave group',
    );
  };

  const onChange = () => {
    if (!client.groups.has(groupId)) closeDialog(null);
  };
  client.addEventListener('change', onChange);
  const done = openDialog(group.name, (close) => {
    closeDialog = close;
    return [
      h('p', { class: 'hint', text: `Group id ${group.id}: share it so others can join.` }),
      group.description ? h('p', { text: group.description }) : '',
      list,
      status,
      h('div', { class: 'dialog-actions' }, leaveOrDissolve()),
    ];
  });
  refresh().catch((error) => {
    status.textContent = error instanceof Error ? error.message : String(error);
  });
  await done;
  client.removeEventListener('change', onChange);
}
