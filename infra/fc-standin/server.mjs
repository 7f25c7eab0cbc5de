// FranceConnect stand-in: a real, standards-compliant OpenID provider (oidc-provider)
// configured like FranceConnect v2 (shared/spec/franceconnect.md §C): endpoints under
// /api/v2, ES256-signed id_token and userinfo, pairwise `sub`, FranceConnect's scopes and
// claims, acr=eidas1, session/end. Clients register dynamically (POST /api/v2/reg with the
// initial access token FC_REGISTRATION_TOKEN), so each test and each demo registers its exact
// redirect URIs. Listens on 127.0.0.1:FC_PORT only.
import http from 'node:http';
import crypto from 'node:crypto';
import * as jose from 'jose';
import Provider from 'oidc-provider';
import { IDENTITIES } from './identities.mjs';

const PORT = Number(process.env.FC_PORT || 0);
const PREFIX = '/api/v2';
const REGISTRATION_TOKEN = process.env.FC_REGISTRATION_TOKEN || 'stand-in-registration';
const PAIRWISE_SALT = crypto.randomBytes(16).toString('hex');

const { privateKey } = await jose.generateKeyPair('ES256', { extractable: true });
const signingKey = { ...(await jose.exportJWK(privateKey)), kid: `es256-${Date.now()}`, alg: 'ES256', use: 'sig' };

const PIVOT = ['given_name', 'family_name', 'birthdate', 'gender', 'birthplace', 'birthcountry'];

const configuration = {
  jwks: { keys: [signingKey] },
  routes: {
    authorization: '/authorize', token: '/token', userinfo: '/userinfo',
    end_session: '/session/end', jwks: '/jwks', registration: '/reg',
  },
  scopes: ['openid', 'email', 'identite_pivot', 'preferred_username', ...PIVOT],
  claims: {
    openid: ['sub'],
    identite_pivot: PIVOT,
    email: ['email'],
    preferred_username: ['preferred_username'],
    ...Object.fromEntries(PIVOT.map((c) => [c, [c]])),
  },
  acrValues: ['eidas1', 'eidas2', 'eidas3'],
  subjectTypes: ['public', 'pairwise'],
  pairwiseIdentifier: async (ctx, accountId, client) =>
    crypto.createHash('sha256').update(`${client.sectorIdentifier}|${accountId}|${PAIRWISE_SALT}`).digest('hex') + 'v1',
  clientDefaults: {
    grant_types: ['authorization_code'], response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_post',
    id_token_signed_response_alg: 'ES256', userinfo_signed_response_alg: 'ES256',
    subject_type: 'pairwise',
  },
  enabledJWA: { idTokenSigningAlgValues: ['ES256', 'RS256'], userinfoSigningAlgValues: ['ES256', 'RS256'] },
  features: {
    devInteractions: { enabled: false },
    jwtUserinfo: { enabled: true },
    registration: { enabled: true, initialAccessToken: REGISTRATION_TOKEN },
    rpInitiatedLogout: {
      enabled: true,
      logoutSource: async (ctx, form) => {
        ctx.body = page('Déconnexion', `${form}<p>Déconnexion de FranceConnect…</p>
          <button form="op.logoutForm" name="logout" value="yes" type="submit">Se déconnecter</button>
          <script src="${PREFIX}/static/logout.js"></script>`);
      },
    },
  },
  // FranceConnect's lifetimes: code 30 s, access token 60 s, id_token 60 s.
  ttl: { AuthorizationCode: 30, AccessToken: 60, IdToken: 60, Interaction: 600, Session: 600, Grant: 600 },
  findAccount: async (ctx, sub) => {
    const identity = IDENTITIES[sub];
    if (!identity) return undefined;
    return { accountId: sub, claims: async () => ({ sub, ...identity }) };
  },
  interactions: { url: (ctx, interaction) => `${PREFIX}/interaction/${interaction.uid}` },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  renderError: async (ctx, out) => {
    ctx.type = 'html';
    ctx.body = page('Erreur', `<h1>Erreur FranceConnect (simulateur)</h1><p>${escapeHtml(out.error)} : ${escapeHtml(out.error_description || '')}</p>`);
  },
};

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

function page(title, body) {
  return `<!doctype html><html lang="fr"><head><meta charset="utf-8"><title>${title} - FranceConnect (simulateur)</title></head>
<body><main>${body}</main></body></html>`;
}

const provider = new Provider(`http://127.0.0.1:${PORT}${PREFIX}`, configuration);
provider.proxy = false;

function readForm(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.on('data', (chunk) => { data += chunk; if (data.length > 10_000) req.destroy(); });
    req.on('end', () => resolve(Object.fromEntries(new URLSearchParams(data))));
    req.on('error', reject);
  });
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction inconnue');
  if (details.prompt.name === 'login') {
    if (action !== 'login') {
      const options = Object.keys(IDENTITIES).map((id) => `<li><code>${id}</code></li>`).join('');
      res.setHeader('content-type', 'text/html; charset=utf-8');
      res.end(page('Connexion', `<h1>Connexion avec le fournisseur d'identité de démonstration</h1>
        <form method="post" action="${PREFIX}/interaction/${uid}/login">
          <label for="login">Identifiant</label>
          <input id="login" name="login" autocomplete="username" required>
          <label for="password">Mot de passe (quelconque)</label>
          <input id="password" name="password" type="password" autocomplete="current-password">
          <button type="submit">Valider</button>
        </form><p>Identités de test :</p><ul>${options}</ul>`));
      return;
    }
    const form = await readForm(req);
    if (!IDENTITIES[form.login]) {
      res.statusCode = 400;
      res.setHeader('content-type', 'text/html; charset=utf-8');
      res.end(page('Connexion', `<p>Identifiant inconnu. <a href="${PREFIX}/interaction/${uid}">Réessayer</a></p>`));
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: form.login, acr: 'eidas1', amr: ['pwd'] } }, { mergeWithLastSubmission: false });
    return;
  }
  // Consent: the stand-in grants what the client asked, as FranceConnect does once the
  // person clicks "Continuer".
  const { accountId } = details.session;
  const grant = details.grantId ? await provider.Grant.find(details.grantId) : new provider.Grant({ accountId, clientId: details.params.client_id });
  const missing = details.prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

const callback = provider.callback();
const server = http.createServer(async (req, res) => {
  try {
    if (req.url === `${PREFIX}/static/logout.js`) {
      res.setHeader('content-type', 'text/javascript');
      res.end("document.getElementById('op.logoutForm').insertAdjacentHTML('beforeend','<input type=\"hidden\" name=\"logout\" value=\"yes\">');document.getElementById('op.logoutForm').submit();");
      return;
    }
    const m = req.url.match(/^\/api\/v2\/interaction\/([\w-]+)(\/login)?$/);
    if (m) {
      await interaction(req, res, m[1], m[2] ? 'login' : null);
      return;
    }
    if (req.url.startsWith(PREFIX)) {
      req.originalUrl = req.url;
      req.url = req.url.slice(PREFIX.length) || '/';
      callback(req, res);
      return;
    }
    res.statusCode = 404;
    res.end('not found');
  } catch (err) {
    res.statusCode = 400;
    res.setHeader('content-type', 'text/html; charset=utf-8');
    res.end(page('Erreur', `<p>${escapeHtml(err.message)}</p>`));
  }
});
server.listen(PORT, '127.0.0.1', () => {
  console.log(`FranceConnect stand-in on http://127.0.0.1:${server.address().port}${PREFIX}`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => server.close(() => process.exit(0)));
