// The page a one-time link from `mcprelay ui` opens (/ui/open#t=TOKEN). The token is in the fragment,
// which the browser sends to no server: take it out of the address bar, trade it for a session with a
// request of this page's own (a navigation that began elsewhere would not carry a SameSite=Strict cookie),
// keep the session's header secret in this tab, and go on to the page.
'use strict';

(async function open() {
  const match = /^#t=([A-Za-z0-9_-]+)$/.exec(window.location.hash);
  history.replaceState(null, '', window.location.pathname);
  const title = document.getElementById('title');
  const message = document.getElementById('message');
  function refuse(text) {
    title.textContent = 'This link does not open the page';
    message.textContent = text;
  }
  if (!match) {
    refuse('This address needs a one-time link: run `mcprelay ui` (with the gateway\'s --home) to open the page.');
    return;
  }
  try {
    const response = await fetch('/ui/session', {
      method: 'POST', cache: 'no-store', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ token: match[1] }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok || !body.csrf) {
      refuse('A link from `mcprelay ui` works once, within a minute, and only with the gateway that made it. ' +
        'Run `mcprelay ui` again for a new one.');
      return;
    }
    sessionStorage.setItem('mcprelay.session', body.csrf);
    window.location.replace('/ui/');
  } catch (error) {
    refuse('The gateway did not answer. Is it still running? Then run `mcprelay ui` again.');
  }
})();
