// A real OpenID Connect provider (the oidc-provider package) on loopback, over TLS, for
// warden's single sign-on tests: one client, test users with groups, a login form a test can
// drive over HTTP. Usage: node provider.mjs DIR PORT REDIRECT_URI
// DIR holds server.pem / server.key (the TLS certificate) and client.secret (the client's
// secret); the provider prints "listening <issuer>" once it accepts connections.
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const [dir, port, redirect] = process.argv.slice(2);
if (!dir || !port || !redirect) {
  console.error('usage: node provider.mjs DIR PORT REDIRECT_URI');
  process.exit(2);
}
const issuer = `https://127.0.0.1:${port}`;
const read = (name) => fs.readFileSync(path.join(dir, name), 'utf8');

// The test users. `amr` is what their login proves: ana's includes a second factor, bo's
// does not; cy is in no group warden maps.
const users = {
  ana: {
    password: 'ana-password',
    amr: ['pwd', 'mfa'],
    claims: { email: 'ana@corp.example.test', email_verified: true, name: 'Ana Analyst', groups: ['SOC Analysts', 'Everyone'] },
  },
  bo: {
    password: 'bo-password',
    amr: ['pwd'],
    claims: { email: 'bo@corp.example.test', email_verified: true, name: 'Bo Responder', groups: ['SOC Analysts'] },
  },
  cy: {
    password: 'cy-password',
    amr: ['pwd', 'mfa'],
    claims: { email: 'cy@corp.example.test', email_verified: true, name: 'Cy Visitor', groups: ['Everyone'] },
  },
};

const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signing = { ...privateKey.export({ format: 'jwk' }), kid: `test-${crypto.randomBytes(6).toString('hex')}`, use: 'sig', alg: 'RS256' };

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'warden',
    client_secret: read('client.secret').trim(),
    redirect_uris: [redirect],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  claims: {
    // With `openid`, what the login proved (amr: RFC 8176 methods; acr: the level).
    openid: ['sub', 'acr', 'amr'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  // Scope claims go in the ID token too (as Azure AD and Okta put groups there).
  conformIdTokenClaims: false,
  jwks: { keys: [signing] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  pkce: { required: () => true },
  findAccount: async (ctx, id) => users[id] && {
    accountId: id,
    claims: async () => ({ sub: id, ...users[id].claims }),
  },
  // First-party client: no consent screen; the grant covers what warden asks for.
  loadExistingGrant: async (ctx) => {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid email profile groups');
    grant.addOIDCClaims(['email', 'email_verified', 'name', 'groups']);
    await grant.save();
    return grant;
  },
});

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginForm(res, uid, error) {
  res.statusCode = error ? 401 : 200;
  res.setHeader('content-type', 'text/html; charset=utf-8');
  res.end(`<!doctype html><html><head><title>Test provider sign-in</title></head><body>
<h1>Test provider</h1>${error ? `<p class="error">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
<label>User <input name="login" autofocus></label>
<label>Password <input name="password" type="password"></label>
<button type="submit">Sign in</button>
</form></body></html>`);
}

async function body(req) {
  let text = '';
  for await (const chunk of req) {
    text += chunk;
    if (text.length > 10000) throw new Error('body too large');
  }
  return new URLSearchParams(text);
}

async function interaction(req, res, uid, isLogin) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction mismatch');
  if (!isLogin || req.method !== 'POST') return loginForm(res, uid);
  const form = await body(req);
  const login = form.get('login');
  const user = users[login];
  if (!user || form.get('password') !== user.password) return loginForm(res, uid, 'wrong user or password');
  const result = { login: { accountId: login, amr: user.amr, acr: user.amr.includes('mfa') ? 'urn:warden:test:mfa' : 'urn:warden:test:pwd' } };
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
}

const callback = provider.callback();
const server = https.createServer({ key: read('server.key'), cert: read('server.pem') }, (req, res) => {
  const m = req.url.match(/^\/interaction\/([A-Za-z0-9_-]+)(\/login)?(\?.*)?$/);
  if (!m) return callback(req, res);
  interaction(req, res, m[1], Boolean(m[2])).catch((e) => {
    res.statusCode = 400;
    res.setHeader('content-type', 'text/plain');
    res.end(`interaction failed: ${e.message}`);
  });
});
server.listen(Number(port), '127.0.0.1', () => console.log(`listening ${issuer}`));
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
