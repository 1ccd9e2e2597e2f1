// The sign-in screen: sign in with a name and password, or create an
// account and sign in with it.

import { h, replace } from '../dom.js';
import { RequestError } from '../protocol.js';

/**
 * A human sentence for a failed sign-in.
 * @param {unknown} error
 * @param {'signin' | 'register'} mode
 */
function explain(error, mode) {
  if (error instanceof RequestError) {
    switch (error.code) {
      case 'unauthorized':
        return 'Wrong name or password.';
      case 'conflict':
        return mode === 'register' ? 'That name is taken. Try another one.' : error.message;
      case 'rate_limited':
        return 'Too many attempts. Wait a minute and try again.';
      case 'bad_request':
        return mode === 'register'
          ? 'Names are 1 to 32 characters (not only digits); passwords 8 to 128 characters.'
          : error.message;
      default:
        return error.message;
    }
  }
  return 'Cannot reach the server. Check your connection and try again.';
}

/**
 * Renders the sign-in screen into `root`.
 * @param {HTMLElement} root
 * @param {import('../client.js').ChatClient} client
 */
export function renderSignIn(root, client) {
  /** @type {'signin' | 'register'} */
  let mode = 'signin';
  const name = h('input', {
    id: 'signin-name',
    name: 'name',
    autocomplete: 'username',
    required: true,
    maxlength: 32,
    autocapitalize: 'none',
    spellcheck: 'false',
  });
  const password = h('input', {
    id: 'signin-password',
    name: 'password',
    type: 'password',
    autocomplete: 'current-password',
    required: true,
    minlength: 8,
    maxlength: 128,
  });
  const error = h('p', { class: 'form-error', role: 'alert' });
  if (client.signOutReason) error.textContent = client.signOutReason;
  const submit = h('button', { type: 'submit', class: 'button primary wide' }, 'Sign in');
  const signInTab = h('button', { type: 'button', class: 'segment', 'aria-pressed': 'true' }, 'Sign in');
  const registerTab = h('button', { type: 'button', class: 'segment', 'aria-pressed': 'false' }, 'Create account');
  const hint = h('p', { class: 'hint', id: 'password-hint', hidden: true }, 'At least 8 characters.');
  password.setAttribute('aria-describedby', 'password-hint');

  /** @param {'signin' | 'register'} next */
  const setMode = (next) => {
    mode = next;
    signInTab.setAttribute('aria-pressed', String(mode === 'signin'));
    registerTab.setAttribute('aria-pressed', String(mode === 'register'));
    submit.textContent = mode === 'signin' ? 'Sign in' : 'Create account';
    password.autocomplete = mode === 'signin' ? 'current-password' : 'new-password';
    hint.hidden = mode === 'signin';
    error.textContent = '';
  };
  signInTab.addEventListener('click', () => setMode('signin'));
  registerTab.addEventListener('click', () => setMode('register'));

  const form = h(
    'form',
    { class: 'signin-form', 'aria-label': 'Sign in' },
    h('div', { class: 'field' }, h('label', { for: 'signin-name', text: 'Name' }), name),
    h('div', { class: 'field' }, h('label', { for: 'signin-password', text: 'Password' }), password, hint),
    error,
    submit,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.textContent = '';
    submit.disabled = true;
    client.signOutReason = '';
    try {
      if (mode === 'register') {
        await client.register(name.value.trim(), password.value);
      } else {
        await client.signIn({ user: name.value.trim(), password: password.value });
      }
    } catch (failure) {
      error.textContent = explain(failure, mode);
      submit.disabled = false;
      password.focus();
    }
  });

  replace(
    root,
    h(
      'main',
      { class: 'signin' },
      h(
        'div',
        { class: 'signin-card' },
        h('div', { class: 'brand-big' }, h('img', { src: '/icon.svg', alt: '', width: 48, height: 48 }), h('h1', { text: 'chatd' })),
        h('p', { class: 'tagline', text: 'Chat with your friends and groups.' }),
        h('div', { class: 'segments', role: 'group', 'aria-label': 'Sign in or create an account' }, signInTab, registerTab),
        form,
      ),
    ),
  );
  name.focus();
}
