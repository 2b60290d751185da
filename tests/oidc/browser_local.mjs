// A real browser through a local account's first day: Debian's Chromium (driven by
// playwright-core, JavaScript off) follows the invitation link from the mail, chooses a
// password, enrols TOTP from the page's secret (codes computed here, RFC 6238), sees the
// recovery codes, then signs in at a portal built on `openid-client` — work email,
// password, code — which verifies the ID token and reads userinfo. With `passkey` set,
// JavaScript is on and the second factor is a passkey instead: Chromium's virtual
// authenticator (CTAP2, user verification, over the DevTools protocol's WebAuthn domain)
// registers one on the enrolment page and answers the sign-in's assertion.
//
//   node browser_local.mjs CONFIG.json   → prints {"claims", "userinfo", "pages", "recovery_codes", "passkeys"}
//
// CONFIG: { issuer, client_id, client_secret, portal_port, link, email, password, passkey? }

import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import * as client from 'openid-client';
import { chromium } from 'playwright-core';

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const portal = `http://127.0.0.1:${cfg.portal_port}`;
const redirectUri = `${portal}/cb`;

/** RFC 4648 base32 (no padding) to bytes. */
function base32(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of text.replace(/[\s=]/g, '').toUpperCase()) {
    const v = alphabet.indexOf(c);
    if (v < 0) throw new Error(`not base32: ${c}`);
    bits += v.toString(2).padStart(5, '0');
  }
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}

/** RFC 6238 with SHA-1, 30-second steps, six digits; `ahead` steps from now. */
function totp(secret, ahead = 0) {
  const step = Math.floor(Date.now() / 1000 / 30) + ahead;
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = crypto.createHmac('sha1', base32(secret)).update(counter).digest();
  const offset = mac[mac.length - 1] & 0xf;
  const code = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return String(code).padStart(6, '0');
}

const oidc = await client.discovery(new URL(cfg.issuer), cfg.client_id, cfg.client_secret, undefined, {
  execute: [client.allowInsecureRequests],
});

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
      res.end(`<!doctype html><title>Portal</title><pre id="claims">${body.replace(/</g, '&lt;')}</pre>`);
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
const visited = async (page) => pages.push({ url: page.url(), title: await page.title() });
let page;
try {
  const context = await browser.newContext({ javaScriptEnabled: Boolean(cfg.passkey) });
  page = await context.newPage();
  let authenticator;
  if (cfg.passkey) {
    const cdp = await context.newCDPSession(page);
    await cdp.send('WebAuthn.enable');
    const added = await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: {
        protocol: 'ctap2', transport: 'internal', hasResidentKey: true,
        hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true,
      },
    });
    authenticator = { cdp, id: added.authenticatorId };
  }

  // The invitation link: choose a password.
  await page.goto(cfg.link);
  await visited(page);
  await page.getByLabel('New password', { exact: true }).fill(cfg.password);
  await page.getByLabel('The same password again', { exact: true }).fill(cfg.password);
  await page.getByRole('button', { name: 'Set password' }).click();
  // TOTP enrolment: the QR code and the key as text.
  await visited(page);
  const qr = await page.getByAltText('QR code for your authenticator app').getAttribute('src');
  if (!qr?.startsWith('data:image/svg+xml;base64,')) throw new Error(`no QR code: ${qr}`);
  const secret = await page.locator('#totp-secret').getAttribute('data-secret');
  if (cfg.passkey) {
    await page.getByRole('button', { name: 'Use a passkey instead' }).click();
    await page.waitForSelector('#recovery-codes');
  } else {
    await page.getByLabel('Code from the app', { exact: true }).fill(totp(secret));
    await page.getByRole('button', { name: 'Turn on two-step verification' }).click();
  }
  await visited(page);
  const recovery = await page.locator('#recovery-codes li').allTextContents();

  // Signing in at the portal: email, password, then a code from the next step (a code is
  // good once, and the enrolment used this step's).
  await page.goto(`${portal}/`);
  await visited(page);
  await page.getByLabel('Work email', { exact: true }).fill(cfg.email);
  await page.getByRole('button', { name: 'Continue' }).click();
  await visited(page);
  await page.getByLabel('Password', { exact: true }).fill(cfg.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await visited(page);
  if (cfg.passkey) {
    await Promise.all([page.waitForURL(`${portal}/cb**`), page.getByRole('button', { name: 'Use your passkey' }).click()]);
  } else {
    await page.getByLabel('Code from your authenticator app', { exact: true }).fill(totp(secret, 1));
    await Promise.all([page.waitForURL(`${portal}/cb**`), page.getByRole('button', { name: 'Continue' }).click()]);
  }
  await visited(page);
  const text = await page.locator('#claims').textContent();
  let passkeys = [];
  if (authenticator) {
    const { credentials } = await authenticator.cdp.send('WebAuthn.getCredentials', { authenticatorId: authenticator.id });
    passkeys = credentials.map((c) => ({ rp_id: c.rpId, sign_count: c.signCount }));
  }
  console.log(JSON.stringify({ ...JSON.parse(text), pages, recovery_codes: recovery.length, passkeys }));
} catch (e) {
  const said = await page?.locator('#form-error, #passkey-status').allTextContents().catch(() => []);
  console.error(`browser sign-in failed: ${e.message}`, JSON.stringify(pages), JSON.stringify(said));
  process.exitCode = 1;
} finally {
  await browser.close();
  server.close();
}
