// From an accepted habilitation request to an aidant's account, in Chromium with the keyboard
// alone (Tab, typing, arrow keys in lists, Space, Enter), one phase per person; the Rust test
// hands sessions over as cookies and reads the mailed links between phases. axe-core runs on
// every page visited. The first mandate itself is `mandate.mjs`.
//
// Request: {"phase", "base", "cookies": [[name, value]], ...the phase's own fields}.
//   "referent"  {file, session, name}: from the account page to the structure's space, then to
//               training; registers the file on the session; back to the space, which shows
//               the person registered.
//   "issuer"    {reference, file, session, name}: from the accepted request's page to its
//               training page; registers the file on the session.
//   "trainer"   {session, registration}: the trainer's sessions, the session, "Présent".
//   "pix"       {csv}: from the account page to the Pix import; types the CSV, imports.
//   "charter"   {link}: the mailed charter link; accepts.
//   "enrol"     {link}: the mailed activation link; reads the key shown, types the code the
//               authenticator would show.
//   "login"     {email, seed_hex, maildev}: e-mail and code, the mailed link, the button.
//   "territory" {tenant, structure, hours}: from the account page to the territory space, the
//               tenant, a structure's page; types new opening hours and saves them.
//   "audit"     {tenant, kind}: from the account page to the auditor's space, the journal;
//               filters by a kind of event; starts the verification and follows it to its
//               outcome.
// Result: {"pages": [{"url", "status", "violations"}], "steps": [..], "cookies": [[name,
//          value]], "seen": {..}, "seed_hex", "error"}.
import crypto from 'node:crypto';
import { launch, axe, readRequest, tabTo, chooseOption, loginLink } from './lib.mjs';

const request = await readRequest();
const { phase, base, cookies = [] } = request;

const pages = [];
const steps = [];
const seen = {};
let seedHex = request.seed_hex || '';
let error = null;
let out = [];

const TABS = 200;

const check = async (page, status = 200) =>
  pages.push({ url: page.url(), status, violations: await axe(page) });

async function open(page, url) {
  const response = await page.goto(url, { waitUntil: 'load' });
  return response ? response.status() : 0;
}

// Reaches `selector` with Tab and presses Enter; returns the status of the page it leads to.
async function activate(page, selector) {
  await tabTo(page, selector, TABS);
  const navigation = page.waitForNavigation({ waitUntil: 'load' });
  await page.keyboard.press('Enter');
  const response = await navigation;
  return response ? response.status() : 0;
}

const mainText = async (page) => (await page.textContent('main')).replace(/\s+/g, ' ');

function expect(condition, what) {
  if (!condition) throw new Error(what);
}

// RFC 4648 base32, as authenticator apps read the key.
function base32(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of text.replace(/[\s=]/g, '').toUpperCase()) {
    const v = alphabet.indexOf(c);
    if (v < 0) throw new Error(`clé illisible : ${text}`);
    bits += v.toString(2).padStart(5, '0');
  }
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}

function totp(seed, at = Date.now()) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(at / 1000 / 30)));
  const mac = crypto.createHmac('sha1', seed).update(counter).digest();
  const offset = mac[mac.length - 1] & 0xf;
  const value = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return String(value).padStart(6, '0');
}

// Registers `file` on `session` from a training page (référent's or issuer's).
async function registerOnTraining(page, file, session, name) {
  const select = await page.evaluate(
    (id) => document.querySelector(`input[name=dossier][value="${id}"]`).form.querySelector('select').id,
    file,
  );
  await chooseOption(page, `#${select}`, session, TABS);
  const status = await activate(page, `form:has(input[name=dossier][value="${file}"]) button[type=submit]`);
  expect(status === 200, `inscription : ${status}`);
  const text = await mainText(page);
  expect(text.includes('est inscrit'), `pas de confirmation d'inscription : ${text.slice(0, 300)}`);
  expect(text.includes(name), 'personne absente de la page');
  await check(page, status);
}

async function referent(page) {
  const { file, session, name } = request;
  let status = await open(page, `${base}/compte`);
  await check(page, status);
  status = await activate(page, 'main a[href="/structure"]');
  expect(page.url() === `${base}/structure`, `espace : ${page.url()}`);
  let text = await mainText(page);
  expect(text.includes(name) && text.includes('à former'), 'personne à former absente de l\'espace');
  await check(page, status);
  steps.push('space');
  status = await activate(page, 'main a[href="/structure/formation"]');
  await check(page, status);
  await registerOnTraining(page, file, session, name);
  steps.push('registered');
  status = await open(page, `${base}/structure`);
  text = await mainText(page);
  expect(text.includes('inscrit en formation'), 'étape non mise à jour dans l\'espace');
  seen.space = text;
  await check(page, status);
}

async function issuer(page) {
  const { reference, file, session, name } = request;
  let status = await open(page, `${base}/demande/demandes/${reference}`);
  await check(page, status);
  status = await activate(page, `main a[href="/demande/demandes/${reference}/formation"]`);
  expect(status === 200, `formation du demandeur : ${status}`);
  await check(page, status);
  await registerOnTraining(page, file, session, name);
  steps.push('registered');
}

async function trainer(page) {
  const { session, registration } = request;
  let status = await open(page, `${base}/formation`);
  await check(page, status);
  status = await activate(page, `main a[href="/formation/sessions/${session}"]`);
  await check(page, status);
  status = await activate(
    page,
    `form:has(input[name=inscription][value="${registration}"]) button[value=present]`,
  );
  expect(status === 200, `présence : ${status}`);
  seen.session = await mainText(page);
  await check(page, status);
  steps.push('attended');
}

async function pix(page) {
  let status = await open(page, `${base}/compte`);
  await check(page, status);
  status = await activate(page, 'main a[href="/national/pix"]');
  await check(page, status);
  await tabTo(page, '#resultats', TABS);
  await page.keyboard.type(request.csv);
  status = await activate(page, 'form[action="/national/pix"] button[type=submit]');
  expect(status === 200, `import : ${status}`);
  seen.report = await mainText(page);
  expect(seen.report.includes('1 ligne(s) importée(s)'), `rapport : ${seen.report.slice(0, 400)}`);
  await check(page, status);
  steps.push('imported');
}

async function charter(page) {
  let status = await open(page, request.link);
  await check(page, status);
  status = await activate(page, 'form[action="/charte"] button[type=submit]');
  expect(status === 200, `charte : ${status}`);
  seen.charter = await mainText(page);
  expect(seen.charter.includes('votre habilitation est ouverte'), `après la charte : ${seen.charter.slice(0, 300)}`);
  await check(page, status);
  steps.push('charter');
}

async function enrol(page) {
  let status = await open(page, request.link);
  await check(page, status);
  status = await activate(page, 'form[action="/activation"] button[type=submit]');
  await check(page, status);
  const secret = (await page.textContent('main code')).trim();
  const seed = base32(secret);
  seedHex = seed.toString('hex');
  await tabTo(page, '#code', TABS);
  await page.keyboard.type(totp(seed));
  const navigation = page.waitForNavigation({ waitUntil: 'load' });
  await page.keyboard.press('Enter');
  const response = await navigation;
  status = response ? response.status() : 0;
  expect(status === 200, `enregistrement : ${status}`);
  seen.enrolled = await mainText(page);
  await check(page, status);
  steps.push('enrolled');
}

async function login(page) {
  const { email, maildev } = request;
  let status = await open(page, `${base}/connexion`);
  await check(page, status);
  await tabTo(page, '#email', TABS);
  await page.keyboard.type(email);
  await tabTo(page, '#code', TABS);
  await page.keyboard.type(totp(Buffer.from(seedHex, 'hex')));
  await page.keyboard.press('Enter');
  await page.waitForSelector('text=Consultez votre messagerie');
  await check(page);
  status = await open(page, await loginLink(maildev, email));
  await check(page, status);
  status = await activate(page, 'main button[type=submit]');
  seen.landed = page.url();
  await check(page, status);
  steps.push('logged-in');
}

async function territory(page) {
  const { tenant, structure, hours } = request;
  let status = await open(page, `${base}/compte`);
  await check(page, status);
  status = await activate(page, 'main a[href="/territoire"]');
  await check(page, status);
  status = await activate(page, `main a[href="/territoire/collectivites/${tenant}"]`);
  await check(page, status);
  const manage = `/territoire/collectivites/${tenant}/structures/${structure}`;
  status = await activate(page, `main a[href="${manage}"]`);
  await check(page, status);
  await tabTo(page, '#opening_hours', TABS);
  await page.keyboard.press('Control+A');
  await page.keyboard.type(hours);
  status = await activate(page, `form[action="${manage}"] button[type=submit]`);
  expect(status === 200, `enregistrement : ${status}`);
  seen.saved = await mainText(page);
  expect(seen.saved.includes('sont enregistrées'), `après l'enregistrement : ${seen.saved.slice(0, 300)}`);
  await check(page, status);
  steps.push('saved');
}

async function audit(page) {
  const { tenant, kind } = request;
  let status = await open(page, `${base}/compte`);
  await check(page, status);
  status = await activate(page, 'main a[href="/audit"]');
  await check(page, status);
  const journal = `/audit/collectivites/${tenant}/journal`;
  status = await activate(page, `main a[href="${journal}"]`);
  await check(page, status);
  await chooseOption(page, '#type', kind, TABS);
  status = await activate(page, `form[action="${journal}"] button[type=submit]`);
  expect(status === 200, `filtre : ${status}`);
  expect(page.url().includes(`type=${kind}`), `filtre non appliqué : ${page.url()}`);
  await check(page, status);
  steps.push('filtered');
  status = await activate(page, `form[action="/audit/collectivites/${tenant}/verification"] button[type=submit]`);
  await check(page, status);
  for (let i = 0; i < 100 && (await mainText(page)).includes("Actualiser l'avancement"); i += 1) {
    await new Promise((r) => setTimeout(r, 200));
    status = await activate(page, 'main a.fr-btn');
  }
  seen.outcome = await mainText(page);
  expect(seen.outcome.includes('Journal intact'), `vérification : ${seen.outcome.slice(0, 300)}`);
  await check(page, status);
  steps.push('verified');
}

const phases = { referent, issuer, trainer, pix, charter, enrol, login, territory, audit };

const browser = await launch();
try {
  const context = await browser.newContext({ locale: 'fr-FR' });
  await context.addCookies(cookies.map(([name, value]) => ({ name, value, url: base })));
  const page = await context.newPage();
  const run = phases[phase];
  if (!run) throw new Error(`phase inconnue : ${phase}`);
  await run(page);
  out = (await context.cookies()).map((c) => [c.name, c.value]);
} catch (e) {
  error = e.message;
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify({ pages, steps, cookies: out, seen, seed_hex: seedHex, error }));
