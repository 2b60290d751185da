// A browser session the Rust tests drive step by step: Debian's Chromium (playwright-core,
// JavaScript off, as a careful user might run it) and a portal built on `openid-client`,
// whose back-channel logout endpoint verifies and records logout tokens.
//
//   node browser_session.mjs CONFIG.json
//
// CONFIG: { issuer, client_id, client_secret, portal_port, backchannel_port }
//
// Prints "ready" once the portal listens, then answers each command line on stdin (JSON)
// with one JSON line:
//   {"cmd": "open", "browser": B, "tab": T, "params": {...}}   the portal starts a sign-in
//       in tab T of browser B (a browser is a cookie jar; tabs share it) with extra
//       authorization parameters (prompt, max_age, login_hint, …); answers the page
//   {"cmd": "email", "browser", "tab", "email"}                the home-realm page
//   {"cmd": "idp_login", "browser", "tab", "login", "password"} the IdP's form
//   {"cmd": "goto", "browser", "tab", "url"}                   any page
//   {"cmd": "click", "browser", "tab", "name"}                 a button by its name
//   {"cmd": "backchannel", "up": bool}                         the logout endpoint up/down
//   {"cmd": "logouts"}                                         logout tokens verified so far
// A page is {url, title, text, result}: `result` is what the portal's callback says
// (claims, tokens, userinfo — or the OAuth error it was sent, with its state).

import fs from 'node:fs';
import http from 'node:http';
import readline from 'node:readline';
import * as jose from 'jose';
import * as client from 'openid-client';
import { chromium } from 'playwright-core';

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const portal = `http://127.0.0.1:${cfg.portal_port}`;
const redirectUri = `${portal}/cb`;
const oidc = await client.discovery(new URL(cfg.issuer), cfg.client_id, cfg.client_secret, undefined, {
  execute: [client.allowInsecureRequests],
});
const jwks = jose.createRemoteJWKSet(new URL(oidc.serverMetadata().jwks_uri));

// Sign-ins in flight, by state: several tabs may sign in at once.
const pending = new Map();
const escape = (s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
const show = (res, result) => {
  res.writeHead(200, { 'content-type': 'text/html' });
  res.end(`<!doctype html><title>Portal</title><pre id="result">${escape(JSON.stringify(result))}</pre>`);
};

const front = http.createServer(async (req, res) => {
  const url = new URL(req.url, portal);
  try {
    if (url.pathname === '/start') {
      const verifier = client.randomPKCECodeVerifier();
      const state = client.randomState();
      const nonce = client.randomNonce();
      const extra = JSON.parse(url.searchParams.get('params') || '{}');
      pending.set(state, { verifier, nonce, maxAge: extra.max_age });
      const to = client.buildAuthorizationUrl(oidc, {
        redirect_uri: redirectUri,
        scope: 'openid email profile',
        code_challenge: await client.calculatePKCECodeChallenge(verifier),
        code_challenge_method: 'S256',
        state,
        nonce,
        ...extra,
      });
      res.writeHead(302, { location: to.href }).end();
      return;
    }
    if (url.pathname === '/cb') {
      const state = url.searchParams.get('state');
      const started = pending.get(state);
      if (url.searchParams.has('error')) {
        show(res, {
          error: url.searchParams.get('error'),
          error_description: url.searchParams.get('error_description'),
          state_known: Boolean(started),
        });
        return;
      }
      if (!started) {
        show(res, { portal_error: 'no sign-in in flight has this state' });
        return;
      }
      pending.delete(state);
      const maxAge = started.maxAge === undefined ? undefined : Number(started.maxAge);
      const tokens = await client.authorizationCodeGrant(oidc, url, {
        pkceCodeVerifier: started.verifier,
        expectedState: state,
        expectedNonce: started.nonce,
        maxAge,
      });
      const claims = tokens.claims();
      const userinfo = await client.fetchUserInfo(oidc, tokens.access_token, claims.sub);
      show(res, {
        claims,
        userinfo,
        id_token: tokens.id_token,
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
      });
      return;
    }
    if (url.pathname === '/bye') {
      show(res, { signed_out: true, state: url.searchParams.get('state') });
      return;
    }
    res.writeHead(404).end();
  } catch (e) {
    show(res, { portal_error: e.message });
  }
});
await new Promise((resolve) => front.listen(cfg.portal_port, '127.0.0.1', resolve));

// The back-channel logout endpoint (OpenID Connect Back-Channel Logout 1.0 §2.6): a
// token that does not verify is refused with 400 and not recorded.
const logouts = [];
const readBody = (req) => new Promise((resolve) => {
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', () => resolve(body));
});
let backchannel;
const backchannelUp = () => new Promise((resolve) => {
  backchannel = http.createServer(async (req, res) => {
    const form = new URLSearchParams(await readBody(req));
    try {
      const { payload, protectedHeader } = await jose.jwtVerify(form.get('logout_token') || '', jwks, {
        issuer: oidc.serverMetadata().issuer,
        audience: cfg.client_id,
        typ: 'logout+jwt',
      });
      if (!payload.events?.['http://schemas.openid.net/event/backchannel-logout'] || payload.nonce !== undefined) {
        throw new Error('not a logout token');
      }
      logouts.push({ ...payload, alg: protectedHeader.alg });
      res.writeHead(200, { 'cache-control': 'no-store' }).end();
    } catch (e) {
      res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'invalid_request', error_description: e.message }));
    }
  });
  backchannel.listen(cfg.backchannel_port, '127.0.0.1', resolve);
});
await backchannelUp();

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
const contexts = new Map();
const tabs = new Map();
async function tab(cmd) {
  const b = cmd.browser || 'main';
  if (!contexts.has(b)) contexts.set(b, await browser.newContext({ javaScriptEnabled: false }));
  const key = `${b}/${cmd.tab || 'main'}`;
  if (!tabs.has(key)) tabs.set(key, await contexts.get(b).newPage());
  return tabs.get(key);
}
async function describe(page, response) {
  const result = await page.locator('#result').textContent({ timeout: 200 }).catch(() => null);
  return {
    url: page.url(),
    status: response ? response.status() : null,
    title: await page.title(),
    text: (await page.locator('body').innerText().catch(() => '')).slice(0, 4000),
    result: result ? JSON.parse(result) : null,
  };
}
// Navigation by a form: the status of the page it ends on.
async function submit(page, click) {
  const [response] = await Promise.all([page.waitForNavigation(), click()]);
  return describe(page, response);
}

async function run(cmd) {
  switch (cmd.cmd) {
    case 'open': {
      const page = await tab(cmd);
      const response = await page.goto(`${portal}/start?params=${encodeURIComponent(JSON.stringify(cmd.params || {}))}`);
      return describe(page, response);
    }
    case 'email': {
      const page = await tab(cmd);
      await page.getByLabel('Work email').fill(cmd.email);
      return submit(page, () => page.getByRole('button', { name: 'Continue' }).click());
    }
    case 'idp_login': {
      const page = await tab(cmd);
      await page.getByLabel('Username').fill(cmd.login);
      await page.getByLabel('Password').fill(cmd.password || 'any');
      return submit(page, () => page.getByRole('button', { name: 'Sign in' }).click());
    }
    case 'goto': {
      const page = await tab(cmd);
      return describe(page, await page.goto(cmd.url));
    }
    case 'click': {
      const page = await tab(cmd);
      return submit(page, () => page.getByRole('button', { name: cmd.name }).click());
    }
    case 'backchannel':
      if (cmd.up && !backchannel.listening) await backchannelUp();
      if (!cmd.up && backchannel.listening) {
        backchannel.closeAllConnections();
        await new Promise((resolve) => backchannel.close(resolve));
      }
      return { up: backchannel.listening };
    case 'logouts':
      return { logouts };
    default:
      throw new Error(`unknown command ${cmd.cmd}`);
  }
}

console.log('ready');
const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let answer;
  try {
    answer = await run(JSON.parse(line));
  } catch (e) {
    answer = { driver_error: e.message };
  }
  console.log(JSON.stringify(answer));
}
await browser.close();
front.close();
backchannel.close();
