// Habilitation requests in Chromium, with the keyboard alone (Tab, typing, Space, arrow keys in
// lists, Enter): the issuer's journey and the reviewer's, in phases between which the Rust test
// acts over HTTP; a session is handed over as cookies both ways. axe-core runs on every page
// visited, error states included.
//
// Request: {"phase", "base", "cookies": [[name, value]], ...the phase's own fields}.
//   "issuer-file"     {maildev, email, bad_email, structure: {name, siret, bad_siret, address,
//                      postal_code, commune_code, mission, opening_hours}, referent: {first_name,
//                      last_name, email, phone}, aidant: {first_name, last_name, email,
//                      profession, employer}}: verifies the address from the mailed link,
//                      fills the four steps (a wrong SIRET key, then a volunteer refused, each
//                      corrected), accepts the commitments and submits from the recap.
//   "issuer-answer"   {reference, expect, answer, opening_hours}: reads the changes asked in
//                      the thread, answers, amends the structure and submits again.
//   "issuer-accepted" {reference}: sees the request accepted, in the list and on its page.
//   "review-changes"  {reference, departement, changes}: filters the queue, opens the request,
//                      asks for changes (first with nothing typed: refused on the page).
//   "review-accept"   {reference, departement}: finds the amended request, accepts it.
//   "forms"           {forms: [{url, fields: [[selector, text, "select"?]], submit}]}: for
//                      error states, types each field (or chooses the option) and submits.
// Result: {"pages": [{"url", "status", "violations"}], "steps": [..], "cookies": [[name,
//          value]], "reference", "seen": {..}, "error"}.
import { launch, axe, readRequest, tabTo, chooseOption, mailedLink } from './lib.mjs';

const request = await readRequest();
const { phase, base, cookies = [] } = request;

const pages = [];
const steps = [];
const seen = {};
let reference = request.reference || '';
let error = null;
let out = [];

// Every page gets a Tab budget large enough for the header, the step tags and the fields.
const TABS = 150;

const check = async (page, status = 200) =>
  pages.push({ url: page.url(), status, violations: await axe(page) });

// Types `text` into the field reached with Tab, replacing what it held.
async function typeInto(page, selector, text) {
  await tabTo(page, selector, TABS);
  await page.keyboard.press('Control+A');
  await page.keyboard.type(text);
}

// Ticks a checkbox with Space.
async function tick(page, selector) {
  await tabTo(page, selector, TABS);
  if (!(await page.isChecked(selector))) await page.keyboard.press('Space');
  if (!(await page.isChecked(selector))) throw new Error(`${selector} not ticked`);
}

// Reaches `selector` with Tab and presses Enter; returns the status of the page it leads to.
async function activate(page, selector) {
  await tabTo(page, selector, TABS);
  const navigation = page.waitForNavigation({ waitUntil: 'load' });
  await page.keyboard.press('Enter');
  const response = await navigation;
  return response ? response.status() : 0;
}

async function open(page, url) {
  const response = await page.goto(url, { waitUntil: 'load' });
  return response ? response.status() : 0;
}

const mainText = async (page) => (await page.textContent('main')).replace(/\s+/g, ' ');
const valueOf = (page, selector) => page.evaluate((s) => document.querySelector(s).value, selector);

function expect(condition, what) {
  if (!condition) throw new Error(what);
}

async function issuerFile(page) {
  const { maildev, email, bad_email: badEmail, structure: s, referent: r, aidant: a } = request;
  await open(page, `${base}/demande`);
  await check(page);
  // A malformed address: the French error on the field, what was typed kept.
  await typeInto(page, '#email', badEmail);
  let status = await activate(page, 'form[action="/demande"] button[type=submit]');
  expect(status === 400, `adresse invalide : ${status}`);
  expect((await page.textContent('#email-erreur')).includes("n'est pas valide"), 'erreur adresse absente');
  expect(await valueOf(page, '#email') === badEmail, 'adresse saisie perdue');
  await check(page, status);
  await typeInto(page, '#email', email);
  status = await activate(page, 'form[action="/demande"] button[type=submit]');
  expect((await mainText(page)).includes('Consultez votre messagerie'), 'pas de confirmation d\'envoi');
  await check(page, status);
  steps.push('address');

  // The mailed link, in the same browser: a button, which opens the requests.
  status = await open(page, await mailedLink(maildev, email, '/demande/acces?jeton='));
  await check(page, status);
  status = await activate(page, 'form[action="/demande/acces"] button[type=submit]');
  expect(page.url() === `${base}/demande/mes-demandes`, `après le lien : ${page.url()}`);
  expect((await mainText(page)).includes(email), 'adresse absente de mes demandes');
  await check(page, status);
  steps.push('verified');

  status = await activate(page, 'main a[href="/demande/nouvelle"]');
  await check(page, status);
  // Step 1, with a SIRET whose key is wrong.
  await typeInto(page, '#name', s.name);
  await chooseOption(page, '#kind', 'ccas', TABS);
  await typeInto(page, '#siret', s.bad_siret);
  await typeInto(page, '#address', s.address);
  await typeInto(page, '#postal_code', s.postal_code);
  await typeInto(page, '#commune_code', s.commune_code);
  await typeInto(page, '#mission', s.mission);
  await typeInto(page, '#opening_hours', s.opening_hours);
  status = await activate(page, 'form[action="/demande/nouvelle"] button[type=submit]');
  expect(status === 400, `SIRET erroné accepté : ${status}`);
  expect((await page.textContent('#siret-erreur')).includes('clé de contrôle'), 'erreur SIRET absente');
  expect(await valueOf(page, '#siret') === s.bad_siret, 'SIRET saisi perdu');
  expect(await valueOf(page, '#name') === s.name && await valueOf(page, '#kind') === 'ccas'
    && await valueOf(page, '#opening_hours') === s.opening_hours, 'saisie perdue');
  seen.siret_error = (await page.textContent('#siret-erreur')).trim();
  await check(page, status);
  await typeInto(page, '#siret', s.siret);
  status = await activate(page, 'form[action="/demande/nouvelle"] button[type=submit]');
  expect(/\/demande\/demandes\/HAB-[^/]+\/referent$/.test(page.url()), `après l'étape 1 : ${page.url()}`);
  [, reference] = page.url().match(/\/demande\/demandes\/([^/]+)\/referent$/);
  await check(page, status);
  steps.push('structure');

  await typeInto(page, '#first_name', r.first_name);
  await typeInto(page, '#last_name', r.last_name);
  await typeInto(page, '#email', r.email);
  await typeInto(page, '#phone', r.phone);
  status = await activate(page, 'main form button[type=submit]');
  expect(page.url().endsWith(`/${reference}/aidants`), `après l'étape 2 : ${page.url()}`);
  await check(page, status);
  steps.push('referent');

  // A volunteer is refused with the reason; the typed values stay; then the right status.
  await typeInto(page, '#first_name', a.first_name);
  await typeInto(page, '#last_name', a.last_name);
  await typeInto(page, '#email', a.email);
  await typeInto(page, '#profession', a.profession);
  await chooseOption(page, '#employment', 'volunteer', TABS);
  await typeInto(page, '#employer', a.employer);
  status = await activate(page, `form[action="/demande/demandes/${reference}/aidants"] button[type=submit]`);
  expect(status === 400, `bénévole accepté : ${status}`);
  seen.aidant_error = (await page.textContent('#employment-erreur')).trim();
  expect(seen.aidant_error.includes('bénévoles'), `motif absent : ${seen.aidant_error}`);
  expect(await valueOf(page, '#email') === a.email && await valueOf(page, '#employer') === a.employer,
    'saisie de l\'aidant perdue');
  await check(page, status);
  await chooseOption(page, '#employment', 'public_agent', TABS);
  status = await activate(page, `form[action="/demande/demandes/${reference}/aidants"] button[type=submit]`);
  expect(page.url().includes(`/${reference}/aidants?message=ajoute`), `après l'ajout : ${page.url()}`);
  expect((await page.textContent('main table')).includes(a.email), 'aidant non listé');
  await check(page, status);
  status = await activate(page, `main .fr-btns-group a[href="/demande/demandes/${reference}/engagements"]`);
  await check(page, status);
  steps.push('aidants');

  for (const id of ['terms_of_use', 'dpo_informed', 'training_financed', 'professionals_only',
    'no_elected_official']) {
    await tick(page, `#${id}`);
  }
  status = await activate(page, 'main form button[type=submit]');
  expect(page.url() === `${base}/demande/demandes/${reference}`, `après les engagements : ${page.url()}`);
  expect((await mainText(page)).includes('Brouillon'), 'pas de brouillon');
  await check(page, status);
  steps.push('commitments');

  status = await activate(page, `form[action="/demande/demandes/${reference}/deposer"] button`);
  expect(page.url().endsWith(`/${reference}?message=deposee`), `après le dépôt : ${page.url()}`);
  seen.state = (await page.textContent('main .fr-badge')).trim();
  await check(page, status);
  steps.push('submitted');
}

async function issuerAnswer(page) {
  const { expect: asked, answer, opening_hours: hours } = request;
  let status = await open(page, `${base}/demande/mes-demandes`);
  await check(page, status);
  status = await activate(page, `main a[href="/demande/demandes/${reference}"]`);
  seen.state = (await page.textContent('main .fr-badge')).trim();
  expect((await page.textContent('#fil ~ ol')).includes(asked), 'demande de modifications absente du fil');
  await check(page, status);
  await typeInto(page, '#message', answer);
  status = await activate(page, `form[action="/demande/demandes/${reference}/message"] button`);
  expect(page.url().includes('?message=message'), `après le message : ${page.url()}`);
  expect((await page.textContent('#fil ~ ol')).includes(answer), 'réponse absente du fil');
  await check(page, status);
  steps.push('answered');

  status = await activate(page, `main a[href="/demande/demandes/${reference}/structure"]`);
  await check(page, status);
  await typeInto(page, '#opening_hours', hours);
  status = await activate(page, 'main form button[type=submit]');
  expect(page.url().endsWith(`/${reference}/referent`), `après la correction : ${page.url()}`);
  status = await activate(page, `main .fr-tags-group a[href="/demande/demandes/${reference}"]`);
  expect((await mainText(page)).includes(hours), 'horaires non modifiés');
  await check(page, status);
  status = await activate(page, `form[action="/demande/demandes/${reference}/deposer"] button`);
  expect(page.url().endsWith(`/${reference}?message=modifiee`), `après le nouveau dépôt : ${page.url()}`);
  seen.after = (await page.textContent('main .fr-badge')).trim();
  await check(page, status);
  steps.push('amended');
}

async function issuerAccepted(page) {
  let status = await open(page, `${base}/demande/mes-demandes`);
  seen.list = (await page.textContent(`main tr:has(a[href="/demande/demandes/${reference}"]) .fr-badge`)).trim();
  await check(page, status);
  status = await activate(page, `main a[href="/demande/demandes/${reference}"]`);
  seen.state = (await page.textContent('main .fr-badge')).trim();
  await check(page, status);
  steps.push('accepted');
}

// The queue: the territory and state chosen in the lists, then the request opened.
async function findInQueue(page, departement, state) {
  let status = await open(page, `${base}/instruction`);
  await check(page, status);
  await chooseOption(page, '#territoire', departement, TABS);
  await chooseOption(page, '#etat', state, TABS);
  status = await activate(page, 'form[action="/instruction"] button[type=submit]');
  const url = new URL(page.url());
  expect(url.searchParams.get('territoire') === departement && url.searchParams.get('etat') === state,
    `filtres non appliqués : ${page.url()}`);
  expect((await page.textContent('main')).includes(reference), `${reference} absente de la file filtrée`);
  await check(page, status);
  status = await activate(page, `main a[href="/instruction/demandes/${reference}"]`);
  await check(page, status);
  return status;
}

async function reviewChanges(page) {
  const { departement, changes } = request;
  await findInQueue(page, departement, 'submitted');
  steps.push('opened');
  // Nothing typed: refused on the page, nothing done.
  const action = `form[action="/instruction/demandes/${reference}/modifications"] button`;
  let status = await activate(page, action);
  expect(status === 400, `demande vide acceptée : ${status}`);
  seen.error = (await page.textContent('main .fr-alert--error')).replace(/\s+/g, ' ').trim();
  // The error sits on the field, which says it is invalid and keeps the keyboard path.
  seen.field_error = (await page.textContent('#changes-erreur')).trim();
  expect(await page.getAttribute('#changes', 'aria-invalid') === 'true'
    && await page.getAttribute('#changes', 'aria-describedby') === 'changes-erreur', 'champ non signalé');
  await check(page, status);
  await typeInto(page, '#changes', changes);
  status = await activate(page, action);
  expect(page.url().endsWith('?message=modifications'), `après la demande de modifications : ${page.url()}`);
  seen.state = (await page.textContent('main .fr-badge')).trim();
  await check(page, status);
  steps.push('changes');
}

async function reviewAccept(page) {
  await findInQueue(page, request.departement, 'amended');
  seen.thread = (await page.textContent('#fil ~ ol')).replace(/\s+/g, ' ').trim();
  const status = await activate(page, `form[action="/instruction/demandes/${reference}/accepter"] button`);
  expect(page.url().endsWith('?message=acceptee'), `après l'acceptation : ${page.url()}`);
  seen.state = (await page.textContent('main .fr-badge')).trim();
  await check(page, status);
  steps.push('accepted');
}

async function forms(page) {
  for (const form of request.forms) {
    await open(page, form.url);
    for (const [selector, text, how] of form.fields) {
      if (how === 'select') await chooseOption(page, selector, text, TABS);
      else await typeInto(page, selector, text);
    }
    const status = await activate(page, form.submit);
    await check(page, status);
    steps.push(`${form.url} ${status}`);
  }
}

const browser = await launch();
try {
  const context = await browser.newContext({ locale: 'fr-FR' });
  await context.addCookies(cookies.map(([name, value]) => ({ name, value, url: base })));
  const page = await context.newPage();
  const phases = {
    'issuer-file': issuerFile,
    'issuer-answer': issuerAnswer,
    'issuer-accepted': issuerAccepted,
    'review-changes': reviewChanges,
    'review-accept': reviewAccept,
    forms,
  };
  try {
    await phases[phase](page);
  } catch (e) {
    error = `${e.message} (sur ${page.url()})`;
  }
  out = (await context.cookies(base)).map((c) => [c.name, c.value]);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify({ pages, steps, cookies: out, reference, seen, error }));
