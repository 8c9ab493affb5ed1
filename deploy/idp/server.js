// Passerelle's development identity provider: oidc-provider (OpenID Certified), configured with the
// console as its one client, the demonstration accounts and a sign-in form of ours.
//
// Everything comes from the environment (deploy/idp.py sets it for `make run` and the tests):
//   IDP_ISSUER          the issuer, e.g. http://127.0.0.1:8010 (the server listens on its port)
//   IDP_KEY_FILE        the RS256 signing key (a private JWK), made at first start, outside the repository
//   IDP_CLIENT_ID, IDP_CLIENT_SECRET, IDP_REDIRECT_URIS, IDP_POST_LOGOUT_REDIRECT_URIS (comma separated)
//   IDP_AUDIENCE        the audience of the access tokens (the services' PASSERELLE_JWT_AUDIENCE)
//   IDP_PARTNERS_FILE   JSON {account: partner id} written by the seed (the partners' ids are theirs)
//   IDP_ACCESS_TOKEN_TTL seconds (default 3600)
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import http from 'node:http';

import Provider from 'oidc-provider';

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} must be set`);
  return value;
};
const list = (value) => value.split(',').map((s) => s.trim()).filter(Boolean);

const ISSUER = env('IDP_ISSUER', 'http://127.0.0.1:8010');
const AUDIENCE = env('IDP_AUDIENCE', 'passerelle');
const ACCESS_TOKEN_TTL = Number(env('IDP_ACCESS_TOKEN_TTL', '3600'));
const PARTNERS_FILE = env('IDP_PARTNERS_FILE', '');

// The demonstration accounts (password "demo" for all): one per role, a second approver (four eyes),
// and two partners whose partner_id is the seeded partner's.
const ACCOUNTS = {
  intake_officer: { name: 'Inès Martin', roles: ['intake_officer'] },
  funding_officer: { name: 'Fabien Leroy', roles: ['funding_officer'] },
  funding_approver: { name: 'Françoise Petit', roles: ['funding_approver'] },
  funding_approver_2: { name: 'Farid Haddad', roles: ['funding_approver'] },
  followup_officer: { name: 'Sophie Bernard', roles: ['followup_officer'] },
  auditor: { name: 'Anne Moreau', roles: ['auditor'] },
  admin: { name: 'Alain Dubois', roles: ['admin'] },
  operator_sn: { name: 'Thiès Conseil', roles: ['partner'], partner: true },
  support_idf: { name: 'Île-de-France Entreprendre Solidaire', roles: ['partner'], partner: true },
};
const PASSWORD = 'demo';
// The services, as one resource server: its indicator (an absolute URI) names it; the tokens it
// receives carry the audience the services check.
const RESOURCE = 'urn:passerelle:services';

function partnerId(accountId) {
  if (!PARTNERS_FILE || !existsSync(PARTNERS_FILE)) return undefined;
  try {
    return JSON.parse(readFileSync(PARTNERS_FILE, 'utf8'))[accountId];
  } catch {
    return undefined;
  }
}

function claimsOf(accountId) {
  const account = ACCOUNTS[accountId];
  const claims = { sub: accountId, name: account.name, preferred_username: accountId, roles: account.roles };
  const partner = account.partner ? partnerId(accountId) : undefined;
  if (partner) claims.partner_id = partner;
  return claims;
}

function signingKey() {
  const file = env('IDP_KEY_FILE');
  if (!existsSync(file)) {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const jwk = { ...privateKey.export({ format: 'jwk' }), alg: 'RS256', use: 'sig', kid: randomBytes(8).toString('hex') };
    writeFileSync(file, JSON.stringify(jwk), { mode: 0o600, flag: 'wx' });
  }
  return JSON.parse(readFileSync(file, 'utf8'));
}

// The provider's pages in the console's language: French, or English when the console asks for it
// (the standard ui_locales parameter of the sign-in and sign-out requests).
const TEXT = {
  fr: {
    signInTitle: 'Connexion', signIn: 'Connexion à la console', login: 'Identifiant', password: 'Mot de passe',
    submit: 'Se connecter', wrong: 'Identifiant ou mot de passe incorrect.',
    signOutTitle: 'Déconnexion', signOut: 'Vous déconnecter de Passerelle ?', yes: 'Oui, me déconnecter',
    no: 'Non, rester connecté', signedOut: 'Vous êtes déconnecté.',
  },
  en: {
    signInTitle: 'Sign in', signIn: 'Sign in to the console', login: 'Username', password: 'Password',
    submit: 'Sign in', wrong: 'Wrong username or password.',
    signOutTitle: 'Sign out', signOut: 'Sign out of Passerelle?', yes: 'Yes, sign me out', no: 'No, stay signed in',
    signedOut: 'You are signed out.',
  },
};
const languageOf = (uiLocales) => (String(uiLocales ?? '').trim().toLowerCase().startsWith('en') ? 'en' : 'fr');

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

const STYLE = `body{font-family:system-ui,sans-serif;background:#f4f5f7;color:#1b1f24;margin:0}
main{max-width:24rem;margin:4rem auto;background:#fff;padding:2rem;border-radius:6px;box-shadow:0 1px 3px #0003}
h1{font-size:1.4rem;margin-top:0}label{display:block;margin:1rem 0 .3rem;font-weight:600}
input{width:100%;box-sizing:border-box;padding:.55rem;border:1px solid #6b7280;border-radius:4px;font-size:1rem}
input:focus,button:focus{outline:3px solid #1d4ed8;outline-offset:2px}
button{margin-top:1.4rem;padding:.6rem 1.2rem;font-size:1rem;background:#1d4ed8;color:#fff;border:0;border-radius:4px;cursor:pointer}
button.secondary{background:#fff;color:#1d4ed8;border:1px solid #1d4ed8;margin-left:.5rem}
.error{color:#b91c1c;font-weight:600}p.brand{color:#374151;margin:0 0 1rem}`;

function page(title, body, lang = 'fr') {
  return `<!DOCTYPE html><html lang="${lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>${escape(title)} · Passerelle</title>
<link rel="icon" href="data:,"><link rel="stylesheet" href="/idp.css"></head><body><main>
<p class="brand">Passerelle</p>${body}</main></body></html>`;
}

function signInForm(uid, lang, { login = '', error = false } = {}) {
  const t = TEXT[lang];
  return page(t.signInTitle, `<h1>${t.signIn}</h1>
${error ? `<p class="error" role="alert" id="signin-error">${t.wrong}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login" autocomplete="off">
<label for="login">${t.login}</label>
<input id="login" name="login" required autofocus value="${escape(login)}" autocapitalize="none" spellcheck="false"${error ? ' aria-describedby="signin-error"' : ''}>
<label for="password">${t.password}</label>
<input id="password" name="password" type="password" required>
<button type="submit">${t.submit}</button>
</form>`, lang);
}

const configuration = {
  clients: [{
    client_id: env('IDP_CLIENT_ID', 'passerelle-console'),
    client_secret: env('IDP_CLIENT_SECRET'),
    client_name: 'Console Passerelle',
    redirect_uris: list(env('IDP_REDIRECT_URIS', 'http://127.0.0.1:8000/auth/callback')),
    post_logout_redirect_uris: list(env('IDP_POST_LOGOUT_REDIRECT_URIS', 'http://127.0.0.1:8000/signed-out')),
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  pkce: { required: () => true },
  jwks: { keys: [signingKey()] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  claims: { openid: ['sub'], profile: ['name', 'preferred_username'], passerelle: ['roles', 'partner_id'] },
  scopes: ['openid', 'profile', 'passerelle'],
  // The console reads who signed in from the ID token (claims there too, not only at userinfo).
  conformIdTokenClaims: false,
  async findAccount(ctx, id) {
    if (!Object.hasOwn(ACCOUNTS, id)) return undefined;
    return { accountId: id, async claims() { return claimsOf(id); } };
  },
  // The services read the roles and partner id from the access token itself.
  async extraTokenClaims(ctx, token) {
    if (token.kind !== 'AccessToken' || !Object.hasOwn(ACCOUNTS, token.accountId)) return undefined;
    const { roles, partner_id } = claimsOf(token.accountId);
    return partner_id ? { roles, partner_id } : { roles };
  },
  features: {
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => RESOURCE,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'passerelle', audience: AUDIENCE, accessTokenTTL: ACCESS_TOKEN_TTL, accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
    rpInitiatedLogout: {
      enabled: true,
      async logoutSource(ctx, form) {
        const lang = languageOf(ctx.oidc.params?.ui_locales);
        const t = TEXT[lang];
        ctx.body = page(t.signOutTitle, `<h1>${t.signOut}</h1>${form}
<button type="submit" form="op.logoutForm" value="yes" name="logout" autofocus>${t.yes}</button>
<button type="submit" form="op.logoutForm" class="secondary">${t.no}</button>`, lang);
      },
      async postLogoutSuccessSource(ctx) {
        ctx.body = page(TEXT.fr.signOutTitle, `<h1>${TEXT.fr.signedOut}</h1>`);
      },
    },
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  ttl: { AccessToken: ACCESS_TOKEN_TTL, IdToken: ACCESS_TOKEN_TTL, Session: 12 * 3600, Grant: 12 * 3600, Interaction: 3600 },
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('Erreur', `<h1>La connexion n'a pas abouti</h1><p>${escape(out.error)}: ${escape(out.error_description ?? '')}</p>`);
  },
};

const provider = new Provider(ISSUER, configuration);

async function readForm(req) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 10_000) throw new Error('form too large');
  }
  return new URLSearchParams(body);
}

function send(res, status, html) {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'content-security-policy': "default-src 'none'; style-src 'self'; img-src data:; form-action 'self' http: https:; frame-ancestors 'none'",
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'cache-control': 'no-store',
  });
  res.end(html);
}

// The interactions: the sign-in form, then the console's consent given at once (it is the programme's
// own client, there is nothing for the person to choose).
async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) return send(res, 400, page('Erreur', '<h1>Cette page de connexion a expiré.</h1>'));
  const { prompt, params, session } = details;
  const lang = languageOf(params.ui_locales);
  if (prompt.name === 'login') {
    if (req.method === 'GET') return send(res, 200, signInForm(uid, lang));
    if (req.method === 'POST' && action === 'login') {
      const form = await readForm(req);
      const login = (form.get('login') ?? '').trim();
      if (!Object.hasOwn(ACCOUNTS, login) || form.get('password') !== PASSWORD) {
        return send(res, 200, signInForm(uid, lang, { login, error: true }));
      }
      return provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
    }
  }
  if (prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
    if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(prompt.details.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }
  return send(res, 400, page('Erreur', '<h1>Cette étape de connexion est inconnue.</h1>'));
}

const callback = provider.callback();
const port = Number(new URL(ISSUER).port || 80);
http.createServer(async (req, res) => {
  const { pathname } = new URL(req.url, ISSUER);
  try {
    if (pathname === '/idp.css') {
      res.writeHead(200, { 'content-type': 'text/css; charset=utf-8', 'cache-control': 'max-age=3600' });
      return res.end(STYLE);
    }
    if (pathname === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      return res.end('ok');
    }
    const match = pathname.match(/^\/interaction\/([\w-]+)(?:\/(login))?$/);
    if (match) return await interaction(req, res, match[1], match[2]);
    return callback(req, res);
  } catch (err) {
    console.error(err);
    if (!res.headersSent) send(res, 400, page('Erreur', '<h1>La connexion a expiré ; recommencez depuis la console.</h1>'));
  }
}).listen(port, new URL(ISSUER).hostname, () => {
  console.log(`identity provider ${ISSUER} (accounts: ${Object.keys(ACCOUNTS).join(', ')})`);
});
