// A real browser through a whole sign-in: Debian's Chromium (driven by playwright-core,
// with JavaScript turned off) opens a portal built on `openid-client`, lands on
// idbridge's home-realm page, enters a work email, signs in at the IdP's form, and comes
// back to the portal, which verifies the ID token and shows its claims.
//
//   node browser.mjs CONFIG.json   → prints {"claims": {...}, "pages": [...]} on success
//
// CONFIG: { issuer, client_id, client_secret, portal_port, email, login, password }

import fs from 'node:fs';
import http from 'node:http';
import * as client from 'openid-client';
import { chromium } from 'playwright-core';

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const portal = `http://127.0.0.1:${cfg.portal_port}`;
const redirectUri = `${portal}/cb`;

const oidc = await client.discovery(new URL(cfg.issuer), cfg.client_id, cfg.client_secret, undefined, {
  execute: [client.allowInsecureRequests],
});

// One sign-in at a time: the portal keeps the request's secrets in memory.
let pending;
const server = http.createServer(async (req, res) => {
  try {
    if (req.url === '/') {
      const verifier = client.randomPKCECodeVerifier();
      pending = { verifier, state: client.randomState(), nonce: client.randomNonce() };
      const url = client.buildAuthorizationUrl(oidc, {
        redirect_uri: redirectUri,
        scope: 'openid email profile',
        code_challenge: await client.calculatePKCECodeChallenge(verifier),
        code_challenge_method: 'S256',
        state: pending.state,
        nonce: pending.nonce,
      });
      res.writeHead(302, { location: url.href }).end();
      return;
    }
    if (req.url.startsWith('/cb')) {
      const tokens = await client.authorizationCodeGrant(oidc, new URL(req.url, portal), {
        pkceCodeVerifier: pending.verifier,
        expectedState: pending.state,
        expectedNonce: pending.nonce,
      });
      const claims = tokens.claims();
      const info = await client.fetchUserInfo(oidc, tokens.access_token, claims.sub);
      const body = JSON.stringify({ claims, userinfo: info });
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(`<!doctype html><title>Portal</title><h1>Welcome ${claims.name ?? ''}</h1><pre id="claims">${body.replace(/</g, '&lt;')}</pre>`);
      return;
    }
    res.writeHead(404).end();
  } catch (e) {
    res.writeHead(500, { 'content-type': 'text/plain' }).end(`portal error: ${e.message}`);
  }
});
await new Promise((resolve) => server.listen(cfg.portal_port, '127.0.0.1', resolve));

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
const pages = [];
try {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  await page.goto(`${portal}/`);
  // idbridge's home-realm discovery page.
  pages.push({ url: page.url(), title: await page.title() });
  await page.getByLabel('Work email').fill(cfg.email);
  await Promise.all([page.waitForURL((u) => !u.pathname.startsWith('/login')), page.getByRole('button', { name: 'Continue' }).click()]);
  // The IdP's sign-in form.
  pages.push({ url: page.url(), title: await page.title() });
  await page.getByLabel('Username').fill(cfg.login);
  await page.getByLabel('Password').fill(cfg.password);
  await Promise.all([page.waitForURL(`${portal}/cb**`), page.getByRole('button', { name: 'Sign in' }).click()]);
  pages.push({ url: page.url(), title: await page.title() });
  const text = await page.locator('#claims').textContent();
  console.log(JSON.stringify({ ...JSON.parse(text), pages }));
} catch (e) {
  console.error(`browser sign-in failed: ${e.message}`, JSON.stringify(pages));
  process.exitCode = 1;
} finally {
  await browser.close();
  server.close();
}
