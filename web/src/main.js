// The entry point: one client, one application shell. Loaded by
// index.html as an ES module, as it is (no build step).

import { ChatClient } from './client.js';
import { App } from './ui/app.js';

const root = document.getElementById('app');
if (root) {
  const client = new ChatClient();
  const app = new App(root, client);
  app.start();
}
