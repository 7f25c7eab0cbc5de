// A relying party of the platform's identity provider, built on openid-client (a real,
// certified third-party OpenID Connect client): it plays FranceConnect (or any service) for the
// tests, the browser journey and the demo. Written for Aidants Connect.
//
//   node infra/idp-client/rp.mjs [port]      prints "rp listening on <port>" once ready
//   (with RP_ISSUER, RP_CLIENT_ID, RP_CLIENT_SECRET set, it configures itself at first use)
//
// Endpoints (JSON unless said):
//   GET  /jwks                   public key of its private_key_jwt key pair
//   POST /configure              {issuer, client_id, client_secret?, auth_method, alg}
//   GET  /start?rep_scope=a,b    {url, state}: a new authorization request (state, nonce, PKCE)
//   GET  /login?rep_scope=...    the same, as a redirect (HTML journey)
//   GET  /callback               redeems the code (token, id_token, signed userinfo); HTML page
//   GET  /result?state=          what the callback got: {claims, userinfo} or {error}
//   POST /replay?state=          redeems the same code again: {error}
//   POST /userinfo?state=        calls userinfo again with the access token: {userinfo} or {error}
//   GET  /logout?state=          {url}: the end-session URL (id_token_hint, state)
//   GET  /logged-out             HTML page; GET /logged-out-states lists the states seen
import http from 'node:http';
import * as client from 'openid-client';

const port = Number(process.argv[2] || process.env.RP_PORT || 0);
const pair = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
const publicJwk = { ...(await crypto.subtle.exportKey('jwk', pair.publicKey)), kid: 'rp-key-1', alg: 'ES256', use: 'sig' };
delete publicJwk.key_ops;
delete publicJwk.ext;

let config = null;
let settings = null;
const flows = new Map();
const loggedOut = [];
let origin = '';

async function configure(body) {
  settings = body;
  const auth = {
    client_secret_post: () => client.ClientSecretPost(body.client_secret),
    client_secret_basic: () => client.ClientSecretBasic(body.client_secret),
    private_key_jwt: () => client.PrivateKeyJwt({ key: pair.privateKey, kid: 'rp-key-1' }),
  }[body.auth_method || 'client_secret_post']();
  config = await client.discovery(
    new URL(body.issuer),
    body.client_id,
    {
      id_token_signed_response_alg: body.alg || 'ES256',
      userinfo_signed_response_alg: body.alg || 'ES256',
      redirect_uris: [`${origin}/callback`],
    },
    auth,
    { execute: [client.allowInsecureRequests], timeout: 10 },
  );
}

async function start(repScope) {
  const state = client.randomState();
  const nonce = client.randomNonce();
  const verifier = client.randomPKCECodeVerifier();
  const params = {
    redirect_uri: `${origin}/callback`,
    scope: 'openid profile email birth',
    acr_values: 'eidas1',
    prompt: 'login',
    state,
    nonce,
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
  };
  if (repScope) {
    params.claims = JSON.stringify({ id_token: { rep_scope: { essential: true, values: repScope.split(',') } } });
  }
  flows.set(state, { nonce, verifier });
  return { url: client.buildAuthorizationUrl(config, params).href, state };
}

function errorOf(e) {
  return { error: e.error || e.code || 'error', description: e.error_description || e.message, status: e.status };
}

async function callback(url) {
  const state = url.searchParams.get('state');
  const flow = flows.get(state);
  if (!flow) return { error: 'unknown_state' };
  flow.callbackUrl = url.href;
  try {
    const tokens = await client.authorizationCodeGrant(config, url, {
      expectedState: state,
      expectedNonce: flow.nonce,
      pkceCodeVerifier: flow.verifier,
      idTokenExpected: true,
    });
    const claims = tokens.claims();
    flow.tokens = tokens;
    const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
    flow.result = { claims, userinfo, id_token: tokens.id_token };
  } catch (e) {
    flow.result = errorOf(e);
  }
  return flow.result;
}

function json(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

function page(res, status, title, body) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8' });
  res.end(`<!doctype html><html lang="fr"><head><meta charset="utf-8"><title>${title}</title></head>` +
    `<body><main><h1>${title}</h1>${body}</main></body></html>`);
}

const escape = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, origin);
  const state = url.searchParams.get('state');
  try {
    if (req.method === 'GET' && url.pathname === '/jwks') return json(res, 200, { keys: [publicJwk] });
    if (req.method === 'POST' && url.pathname === '/configure') {
      let raw = '';
      for await (const chunk of req) raw += chunk;
      await configure(JSON.parse(raw));
      return json(res, 200, { ok: true, redirect_uri: `${origin}/callback` });
    }
    // The demo (infra/run up) configures it from the environment, once the platform answers.
    if (!config && process.env.RP_ISSUER) {
      await configure({
        issuer: process.env.RP_ISSUER,
        client_id: process.env.RP_CLIENT_ID,
        client_secret: process.env.RP_CLIENT_SECRET,
        auth_method: 'client_secret_post',
        alg: 'ES256',
      });
    }
    if (!config) return json(res, 409, { error: 'not_configured' });
    if (req.method === 'GET' && url.pathname === '/start') return json(res, 200, await start(url.searchParams.get('rep_scope')));
    if (req.method === 'GET' && url.pathname === '/login') {
      const { url: to } = await start(url.searchParams.get('rep_scope'));
      res.writeHead(302, { location: to });
      return res.end();
    }
    if (req.method === 'GET' && url.pathname === '/') {
      return page(res, 200, 'Service en ligne de démonstration',
        '<p>Ce service accepte les démarches « Logement » et « Famille - Scolarité ».</p>' +
        '<p><a href="/login?rep_scope=Logement,Famille-Scolarit%C3%A9">Se connecter avec Aidants Connect</a></p>');
    }
    if (req.method === 'GET' && url.pathname === '/callback') {
      const result = await callback(url);
      if (result.error) {
        return page(res, 200, 'Connexion refusée', `<p id="erreur">${escape(result.error)} : ${escape(result.description)}</p>`);
      }
      const u = result.userinfo;
      return page(res, 200, 'Identité reçue',
        `<dl id="identite"><dt>Prénoms</dt><dd id="given_name">${escape(u.given_name)}</dd>` +
        `<dt>Nom</dt><dd id="family_name">${escape(u.family_name)}</dd>` +
        `<dt>Naissance</dt><dd id="birthdate">${escape(u.birthdate)}</dd>` +
        `<dt>Démarche</dt><dd id="rep_scope">${escape((result.claims.rep_scope || []).join(', '))}</dd></dl>` +
        `<p><a href="${escape(`/logout-now?state=${encodeURIComponent(state)}`)}">Se déconnecter</a></p>`);
    }
    const flow = flows.get(state);
    if (url.pathname === '/result') return json(res, flow?.result ? 200 : 404, flow?.result || { error: 'no_result' });
    if (req.method === 'POST' && url.pathname === '/replay') {
      try {
        await client.authorizationCodeGrant(config, new URL(flow.callbackUrl), {
          expectedState: state, expectedNonce: flow.nonce, pkceCodeVerifier: flow.verifier, idTokenExpected: true,
        });
        return json(res, 200, { error: null });
      } catch (e) {
        return json(res, 200, errorOf(e));
      }
    }
    if (req.method === 'POST' && url.pathname === '/userinfo') {
      try {
        const userinfo = await client.fetchUserInfo(config, flow.tokens.access_token, flow.result.claims.sub);
        return json(res, 200, { userinfo });
      } catch (e) {
        return json(res, 200, errorOf(e));
      }
    }
    if (url.pathname === '/logout' || url.pathname === '/logout-now') {
      const to = client.buildEndSessionUrl(config, {
        id_token_hint: flow.tokens.id_token,
        post_logout_redirect_uri: `${origin}/logged-out`,
        state,
      }).href;
      if (url.pathname === '/logout') return json(res, 200, { url: to });
      res.writeHead(302, { location: to });
      return res.end();
    }
    if (url.pathname === '/logged-out') {
      loggedOut.push(state);
      return page(res, 200, 'Déconnecté', '<p>Vous êtes déconnecté du service.</p>');
    }
    if (url.pathname === '/logged-out-states') return json(res, 200, loggedOut);
    return json(res, 404, { error: 'not_found' });
  } catch (e) {
    return json(res, 500, errorOf(e));
  }
});

server.listen(port, '127.0.0.1', () => {
  origin = `http://127.0.0.1:${server.address().port}`;
  console.log(`rp listening on ${server.address().port}`);
});
