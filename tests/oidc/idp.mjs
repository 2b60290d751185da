// A customer's IdP for the SSO tests: the real `oidc-provider` (the certified Node.js
// OpenID provider) on loopback, with test users whose claims carry groups.
//
//   node idp.mjs CONFIG.json      → prints "listening <port>" when ready
//   node idp.mjs --gen-key KID    → prints a private RSA JWK
//
// CONFIG: { port, issuer, clients: [...], users: { login: { sub, email, ..., groups } },
//           keys: [private JWKs], old_key, foreign: { issuer, key } }
//
// The IdP's token answers can be tampered with at run time (POST /_test/tamper with
// {"mode": ...}) to play an attacker or a broken IdP: alg "none", a wrong nonce, a key
// the IdP no longer publishes, a token from another IdP, an expired token; and its
// answers to the authorization request can name another issuer or none
// (`auth_iss_evil`, `auth_iss_missing`).

import crypto from 'node:crypto';
import fs from 'node:fs';
import Provider from 'oidc-provider';

if (process.argv[2] === '--gen-key') {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  console.log(JSON.stringify({ ...jwk, kid: process.argv[3] || 'k1', alg: 'RS256', use: 'sig' }));
  process.exit(0);
}

if (process.argv[2] === '--gen-pem') {
  // An EC P-256 key for private_key_jwt: the private PEM for idbridge, the public JWK for
  // the IdP's client registration.
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const kid = process.argv[3] || 'client-key';
  console.log(JSON.stringify({
    pem: privateKey.export({ type: 'pkcs8', format: 'pem' }),
    jwk: { ...publicKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' },
  }));
  process.exit(0);
}

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
let tamper = 'none';

const b64 = (buf) => Buffer.from(buf).toString('base64url');
const sign = (jwk, header, payload) => {
  const input = `${b64(JSON.stringify(header))}.${b64(JSON.stringify(payload))}`;
  const key = crypto.createPrivateKey({ key: jwk, format: 'jwk' });
  return `${input}.${b64(crypto.sign('sha256', Buffer.from(input), key))}`;
};

function rewrite(idToken) {
  const [h, p] = idToken.split('.');
  const header = JSON.parse(Buffer.from(h, 'base64url'));
  const payload = JSON.parse(Buffer.from(p, 'base64url'));
  const now = Math.floor(Date.now() / 1000);
  switch (tamper) {
    case 'alg_none':
      return `${b64(JSON.stringify({ alg: 'none', typ: 'JWT' }))}.${b64(JSON.stringify(payload))}.`;
    case 'wrong_nonce':
      return sign(config.keys[0], header, { ...payload, nonce: 'not-the-nonce' });
    case 'old_key':
      return sign(config.old_key, { ...header, kid: config.old_key.kid }, payload);
    case 'foreign':
      return sign(config.foreign.key, { ...header, kid: config.foreign.key.kid }, { ...payload, iss: config.foreign.issuer });
    case 'expired':
      return sign(config.keys[0], header, { ...payload, iat: now - 7200, exp: now - 3600 });
    case 'wrong_audience':
      return sign(config.keys[0], header, { ...payload, aud: 'someone-else' });
    default:
      return idToken;
  }
}

const users = config.users || {};
const provider = new Provider(config.issuer, {
  clients: config.clients,
  jwks: { keys: config.keys },
  pkce: { required: () => true },
  acrValues: config.acrValues || [],
  // Claims go into the ID token, as Entra and Okta put them there.
  conformIdTokenClaims: false,
  claims: {
    openid: ['sub', 'groups', 'hasgroups', 'tid', 'oid', 'roles'],
    email: ['email', 'email_verified'],
    profile: ['name', 'given_name', 'family_name', 'preferred_username'],
  },
  // `client_credentials: true` in CONFIG: the OAuth 2.0 client credentials grant and
  // token introspection (RFC 7662), for services that call an API as themselves — the
  // outbound SCIM connector's tests, with the portal checking tokens by introspection.
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: !!config.client_credentials },
    introspection: { enabled: !!config.client_credentials },
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  // Consent is implied for the test client (a first-party app, as SSO apps are).
  loadExistingGrant: async (ctx) => {
    const existing = ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (existing) {
      const found = await ctx.oidc.provider.Grant.find(existing);
      if (found) return found;
    }
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid email profile');
    await grant.save();
    return grant;
  },
  findAccount: async (ctx, id) => {
    const user = Object.values(users).find((u) => u.sub === id);
    if (!user) return undefined;
    return {
      accountId: id,
      async claims() {
        const { password, ...claims } = user;
        return claims;
      },
    };
  },
  ttl: { IdToken: 3600, AccessToken: 3600, Session: 3600, Interaction: 600, Grant: 3600, AuthorizationCode: 60, ...config.ttl },
});
provider.proxy = false;

const page = (uid, error) => `<!doctype html><html lang="en"><head><title>Acme IdP sign-in</title></head><body>
<h1>Acme IdP</h1>${error ? `<p role="alert">${error}</p>` : ''}
<form method="post" action="/interaction/${uid}/login">
<label for="login">Username</label><input id="login" name="login" autocomplete="username">
<label for="password">Password</label><input id="password" name="password" type="password">
<button type="submit">Sign in</button></form></body></html>`;

const readForm = (req) => new Promise((resolve) => {
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', () => resolve(Object.fromEntries(new URLSearchParams(body))));
});

provider.use(async (ctx, next) => {
  if (ctx.path === '/_test/user' && ctx.method === 'POST') {
    // The directory behind the IdP changes: a user's claims (JSON in `claims`) replace
    // the ones given, from the next login on.
    const body = await readForm(ctx.req);
    users[body.login] = { ...users[body.login], ...JSON.parse(body.claims) };
    ctx.body = users[body.login];
    return;
  }
  if (ctx.path === '/_test/tamper' && ctx.method === 'POST') {
    const body = await readForm(ctx.req);
    tamper = body.mode || 'none';
    ctx.body = { mode: tamper };
    return;
  }
  if (ctx.path.startsWith('/interaction/')) {
    const [, , uid, action] = ctx.path.split('/');
    if (ctx.method === 'GET' && !action) {
      await provider.interactionDetails(ctx.req, ctx.res);
      ctx.type = 'html';
      ctx.body = page(uid);
      return;
    }
    if (ctx.method === 'POST' && action === 'login') {
      await provider.interactionDetails(ctx.req, ctx.res);
      const form = await readForm(ctx.req);
      const user = users[form.login];
      if (!user || (user.password && user.password !== form.password)) {
        ctx.type = 'html';
        ctx.status = 401;
        ctx.body = page(uid, 'Wrong username or password');
        return;
      }
      ctx.respond = false;
      await provider.interactionFinished(ctx.req, ctx.res, { login: { accountId: user.sub } }, { mergeWithLastSubmission: false });
      return;
    }
  }
  await next();
  // A mix-up (RFC 9207): the answer to the client names another issuer, or none.
  const location = ctx.response.get('location');
  if (location && (tamper === 'auth_iss_evil' || tamper === 'auth_iss_missing')) {
    const to = new URL(location, config.issuer);
    if (to.searchParams.has('code')) {
      if (tamper === 'auth_iss_evil') to.searchParams.set('iss', 'https://evil.example');
      else to.searchParams.delete('iss');
      ctx.set('location', to.href);
    }
  }
  if (ctx.path === '/token' && ctx.status === 200 && tamper !== 'none' && ctx.body && ctx.body.id_token) {
    ctx.body = { ...ctx.body, id_token: rewrite(ctx.body.id_token) };
  }
});

const server = provider.listen(config.port, '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
