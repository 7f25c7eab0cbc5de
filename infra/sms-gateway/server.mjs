// A local SMS gateway: the HTTP receiver that stands in for an SMS provider, so that the
// platform's SMS channel runs for real here (tests and `infra/run up`). Nothing leaves the
// machine: accepted messages are kept in a JSON-lines file and listed on a page.
//
// API (what the platform's `http_json` provider speaks):
//   POST /v1/messages   Authorization: Bearer <token>, Idempotency-Key: <message id>
//                       {"to": "+33612345678", "text": "…", "sender": "AidantsCo"}
//     201 {"id", "duplicate": false}        accepted
//     200 {"id", "duplicate": true}         same Idempotency-Key seen before: not sent again
//     400 {"error": "invalid_request", "message"}   bad number, empty or too long text
//     401 {"error": "unauthorized"}
//   POST /v3/transactionalSMS/send   what the `brevo` provider speaks (the shape of Brevo's
//                       transactional SMS API): api-key: <token>,
//                       {"sender", "recipient": "33612345678", "content", "type": "transactional"}
//     201 {"messageId": n}   accepted (no idempotency: each request is a new message)
//     400 {"code": "invalid_parameter", "message"}   bad number, sender, empty or too long text
//     401 {"code": "unauthorized", "message"}
//   GET /v1/messages    the accepted messages of both APIs (JSON), ?to= filters by number
//   GET /               the same, as a page
//   POST /control       test hooks: {"drop_responses": n} accepts the next n messages and cuts
//                       the connection instead of answering; {"fail_next": n, "status": s}
//                       refuses the next n with status s (nothing accepted).
//
// Environment: SMS_PORT, SMS_TOKEN, SMS_DATA (file of accepted messages; kept across restarts
// with the idempotency keys it holds).
import http from 'node:http';
import fs from 'node:fs';
import crypto from 'node:crypto';

const port = Number(process.env.SMS_PORT || 0);
const token = process.env.SMS_TOKEN || '';
const dataFile = process.env.SMS_DATA;
if (!port || !token || !dataFile) {
  console.error('SMS_PORT, SMS_TOKEN et SMS_DATA sont nécessaires');
  process.exit(2);
}

const messages = [];
const byKey = new Map();
if (fs.existsSync(dataFile)) {
  for (const line of fs.readFileSync(dataFile, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const m = JSON.parse(line);
    messages.push(m);
    if (m.idempotency_key) byKey.set(m.idempotency_key, m);
  }
}
let dropResponses = 0;
let failNext = 0;
let failStatus = 503;

const MAX_TEXT = 612; // four concatenated GSM segments
const E164 = /^\+[1-9][0-9]{7,14}$/;

function json(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
  res.end(JSON.stringify(body));
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > 65536) { reject(new Error('trop gros')); req.destroy(); return; }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function authorised(req) {
  const given = Buffer.from(req.headers.authorization || '');
  const expected = Buffer.from(`Bearer ${token}`);
  return given.length === expected.length && crypto.timingSafeEqual(given, expected);
}

function authorisedKey(req) {
  const given = Buffer.from(String(req.headers['api-key'] || ''));
  const expected = Buffer.from(token);
  return given.length === expected.length && crypto.timingSafeEqual(given, expected);
}

let nextMessageId = 1511882900000000 + messages.length;
const SENDER = /^([A-Za-z0-9 ]{1,11}|[0-9]{1,15})$/;

function keep(message, req, res, answer) {
  fs.appendFileSync(dataFile, JSON.stringify(message) + '\n');
  messages.push(message);
  if (message.idempotency_key) byKey.set(message.idempotency_key, message);
  if (dropResponses > 0) {
    dropResponses -= 1;
    req.socket.destroy();
    return;
  }
  return json(res, 201, answer);
}

// Brevo-shaped API: no idempotency key, so a request whose answer is lost must not be resent.
async function sendBrevo(req, res) {
  if (!authorisedKey(req)) return json(res, 401, { code: 'unauthorized', message: 'Key not found' });
  let body;
  try {
    body = JSON.parse(await readBody(req));
  } catch {
    return json(res, 400, { code: 'bad_request', message: 'invalid JSON' });
  }
  if (failNext > 0) {
    failNext -= 1;
    return json(res, failStatus, { code: 'unavailable', message: 'try later' });
  }
  const invalid = (message) => json(res, 400, { code: 'invalid_parameter', message });
  if (typeof body.recipient !== 'string' || !/^[1-9][0-9]{7,14}$/.test(body.recipient)) return invalid('recipient is not valid');
  if (typeof body.sender !== 'string' || !SENDER.test(body.sender)) return invalid('sender is not valid');
  if (typeof body.content !== 'string' || !body.content.trim() || body.content.length > MAX_TEXT) return invalid('content is not valid');
  const message = {
    id: crypto.randomUUID(),
    idempotency_key: null,
    provider: 'brevo',
    message_id: nextMessageId++,
    to: `+${body.recipient}`,
    sender: body.sender,
    text: body.content,
    received_at: new Date().toISOString(),
  };
  return keep(message, req, res, { messageId: message.message_id });
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

async function send(req, res) {
  if (!authorised(req)) return json(res, 401, { error: 'unauthorized' });
  const key = req.headers['idempotency-key'];
  if (!key) return json(res, 400, { error: 'invalid_request', message: 'Idempotency-Key manquant' });
  let body;
  try {
    body = JSON.parse(await readBody(req));
  } catch {
    return json(res, 400, { error: 'invalid_request', message: 'JSON illisible' });
  }
  const seen = byKey.get(key);
  if (seen) return json(res, 200, { id: seen.id, duplicate: true });
  if (failNext > 0) {
    failNext -= 1;
    return json(res, failStatus, { error: 'unavailable' });
  }
  if (typeof body.to !== 'string' || !E164.test(body.to)) {
    return json(res, 400, { error: 'invalid_request', message: 'numéro invalide' });
  }
  if (typeof body.text !== 'string' || !body.text.trim() || body.text.length > MAX_TEXT) {
    return json(res, 400, { error: 'invalid_request', message: 'texte vide ou trop long' });
  }
  const message = {
    id: crypto.randomUUID(),
    idempotency_key: key,
    to: body.to,
    sender: typeof body.sender === 'string' ? body.sender : '',
    text: body.text,
    received_at: new Date().toISOString(),
  };
  return keep(message, req, res, { id: message.id, duplicate: false });
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://localhost');
  try {
    if (req.method === 'POST' && url.pathname === '/v1/messages') return await send(req, res);
    if (req.method === 'POST' && url.pathname === '/v3/transactionalSMS/send') return await sendBrevo(req, res);
    if (req.method === 'GET' && url.pathname === '/v1/messages') {
      const to = url.searchParams.get('to');
      return json(res, 200, messages.filter((m) => !to || m.to === to));
    }
    if (req.method === 'POST' && url.pathname === '/control') {
      const c = JSON.parse((await readBody(req)) || '{}');
      dropResponses = Number(c.drop_responses || 0);
      failNext = Number(c.fail_next || 0);
      failStatus = Number(c.status || 503);
      return json(res, 200, { drop_responses: dropResponses, fail_next: failNext });
    }
    if (req.method === 'GET' && url.pathname === '/') {
      const rows = messages.slice().reverse().map((m) =>
        `<tr><td>${escapeHtml(m.received_at)}</td><td>${escapeHtml(m.to)}</td><td>${escapeHtml(m.text)}</td></tr>`).join('');
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      return res.end(`<!DOCTYPE html><html lang="fr"><head><meta charset="utf-8"><title>SMS reçus (passerelle locale)</title></head>
<body><main><h1>SMS reçus par la passerelle locale</h1>
<table><caption>${messages.length} message(s), du plus récent au plus ancien</caption>
<thead><tr><th scope="col">Reçu le</th><th scope="col">Numéro</th><th scope="col">Texte</th></tr></thead>
<tbody>${rows}</tbody></table></main></body></html>`);
    }
    json(res, 404, { error: 'not_found' });
  } catch (e) {
    json(res, 500, { error: 'server_error', message: String(e.message || e) });
  }
});
server.listen(port, '127.0.0.1');
