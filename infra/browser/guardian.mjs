// A guardian service's journey in Chromium, with the keyboard alone: the delegate logs in
// (e-mail, TOTP code, link received in MailDev), imports the service's CSV (the file chosen in
// the file control reached by Tab, as the system's file dialog would), waits for the progress
// bar to end and reads the report, filters the measures on themself and hands the first one
// over to another delegate; then a public service (the openid-client relying party) asks for
// a démarche the decision allows — the delegate chooses the person and the démarche and the
// service receives the identity — and for one it does not allow, for which nobody is offered.
// axe-core runs on every page of the platform visited.
// Request: {"base", "rp", "email", "code", "maildev", "known_links" (login links already
//           received by that address), "csv", "me", "other", "person",
//           "allowed", "category", "refused"}.
// Result: {"pages": [{"url", "violations"}], "report", "handed_over", "identity", "refused",
//          "steps": [..]}.
import { launch, axe, readRequest, tabTo, chooseOption, mailedLink } from './lib.mjs';

const {
  base, rp, email, code, maildev, known_links: knownLinks, csv, me, other, person, allowed, category,
  refused: refusedScope,
} = await readRequest();

const browser = await launch();
const pages = [];
const steps = [];
const out = { report: null, handed_over: null, identity: null, refused: null };
const check = async (page) => pages.push({ url: page.url(), violations: await axe(page) });
let page = null;
try {
  page = await (await browser.newContext({ locale: 'fr-FR' })).newPage();
  await page.goto(`${base}/mesures/import`, { waitUntil: 'load' });
  await page.waitForURL('**/connexion**');
  await tabTo(page, '#email');
  await page.keyboard.type(email);
  await tabTo(page, '#code');
  await page.keyboard.type(code);
  await page.keyboard.press('Enter');
  await page.waitForSelector('text=Consultez votre messagerie');
  await page.goto(await mailedLink(maildev, email, '/connexion/lien', knownLinks), { waitUntil: 'load' });
  await tabTo(page, 'button[type=submit]');
  await page.keyboard.press('Enter');
  await page.waitForURL('**/compte');
  steps.push('login');
  await page.goto(`${base}/mesures/import`, { waitUntil: 'load' });

  // The import: the file control reached by Tab, the file given as the system dialog would.
  await check(page);
  await tabTo(page, '#fichier');
  await page.setInputFiles('#fichier', csv);
  await tabTo(page, 'form[action="/mesures/import"] button[type=submit]');
  await page.keyboard.press('Enter');
  await page.waitForURL('**/mesures/import/**');
  steps.push('uploaded');
  // The progress bar's script reloads the page when the import has ended.
  await page.waitForSelector('text=Import terminé', { timeout: 60_000 });
  await check(page);
  out.report = (await page.textContent('main')).replace(/\s+/g, ' ');
  steps.push('report');

  // The caseload: filter on myself, tick the first measure, give it to the other delegate.
  await page.goto(`${base}/mesures`, { waitUntil: 'load' });
  await check(page);
  await chooseOption(page, '#delegue', me);
  await tabTo(page, 'form[action="/mesures"] button[type=submit]');
  await page.keyboard.press('Enter');
  await page.waitForURL('**/mesures?delegue=**');
  await check(page);
  await tabTo(page, 'input[name=mesure]');
  await page.keyboard.press('Space');
  await chooseOption(page, '#a', other);
  await tabTo(page, 'form[action="/mesures/passation"] button[type=submit]');
  await page.keyboard.press('Enter');
  await page.waitForSelector('text=a été confiée');
  await check(page);
  out.handed_over = (await page.textContent('.fr-alert--success')).trim();
  steps.push('handed over');

  // A démarche the decision allows, through the identity provider.
  await page.goto(`${rp}/login?rep_scope=${encodeURIComponent(allowed)}`, { waitUntil: 'load' });
  await page.waitForSelector('text=Pour qui faites-vous cette démarche');
  await check(page);
  await tabTo(page, 'a[href*="ac_usager="]');
  const focused = await page.evaluate(() => document.activeElement?.textContent || '');
  if (!focused.includes(person)) throw new Error(`premier choix : ${focused}`);
  await page.keyboard.press('Enter');
  await page.waitForSelector('input[name=ac_categorie]');
  await check(page);
  await tabTo(page, 'input[name=ac_categorie]');
  for (let i = 0; i < 10 && !(await page.evaluate((c) => document.activeElement?.value === c, category)); i += 1) {
    await page.keyboard.press('ArrowDown');
  }
  await page.keyboard.press('Space');
  await tabTo(page, 'button[value=choisir]');
  await page.keyboard.press('Enter');
  await page.waitForURL(`${rp}/callback**`);
  await page.waitForSelector('h1');
  const text = async (id) => (await page.textContent(`#${id}`).catch(() => null));
  out.identity = {
    given_name: await text('given_name'),
    family_name: await text('family_name'),
    rep_scope: await text('rep_scope'),
    error: await text('erreur'),
  };
  steps.push('allowed démarche');

  // One the decision does not allow: nobody to choose.
  await page.goto(`${rp}/login?rep_scope=${encodeURIComponent(refusedScope)}`, { waitUntil: 'load' });
  await page.waitForURL('**/oidc/authorize?**');
  await page.waitForSelector('main h1');
  await check(page);
  out.refused = (await page.textContent('main')).replace(/\s+/g, ' ');
  steps.push('refused démarche');
} catch (e) {
  steps.push(`error: ${e.message}`);
  if (page) steps.push(`at ${page.url()}: ${(await page.textContent('main').catch(() => '')).replace(/\s+/g, ' ').slice(0, 600)}`);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify({ pages, steps, ...out }));
