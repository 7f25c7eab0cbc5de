// Using a mandate in Chromium, with the keyboard alone: a service (the openid-client relying
// party) sends the aidant to the platform's identity provider; the aidant logs in (e-mail,
// TOTP code, link received in MailDev), chooses the usager, then the démarche, and the service
// receives the identity. axe-core runs on every page of the platform visited.
// Request: {"base", "rp", "rep_scope", "email", "code", "maildev", "usager_name", "category"}.
// Result: {"pages": [{"url", "violations"}], "identity": {given_name, family_name, rep_scope},
//          "steps": [..]}.
import { launch, axe, readRequest, tabTo, loginLink } from './lib.mjs';

const { base, rp, rep_scope: repScope, email, code, maildev, usager_name: usagerName, category } = await readRequest();

const browser = await launch();
const pages = [];
const steps = [];
let identity = null;
const check = async (page) => pages.push({ url: page.url(), violations: await axe(page) });
try {
  const page = await (await browser.newContext({ locale: 'fr-FR' })).newPage();
  await page.goto(`${rp}/login?rep_scope=${encodeURIComponent(repScope)}`, { waitUntil: 'load' });
  // No session: the platform asks for the login first.
  await page.waitForURL('**/connexion?**');
  await check(page);
  await tabTo(page, '#email');
  await page.keyboard.type(email);
  await tabTo(page, '#code');
  await page.keyboard.type(code);
  await page.keyboard.press('Enter');
  await page.waitForSelector('text=Consultez votre messagerie');
  await check(page);
  await page.goto(await loginLink(maildev, email), { waitUntil: 'load' });
  await check(page);
  await tabTo(page, 'button[type=submit]');
  await page.keyboard.press('Enter');
  steps.push('login');

  // Back on the same authorization request: the usager.
  await page.waitForURL('**/oidc/authorize?**');
  await page.waitForSelector('text=Pour qui faites-vous cette démarche');
  await check(page);
  await tabTo(page, `a[href*="ac_usager="]`);
  const focused = await page.evaluate(() => document.activeElement?.textContent || '');
  if (!focused.includes(usagerName)) throw new Error(`premier choix : ${focused}`);
  await page.keyboard.press('Enter');
  steps.push('usager');

  await page.waitForSelector('input[name=ac_categorie]');
  await check(page);
  await tabTo(page, 'input[name=ac_categorie]');
  for (let i = 0; i < 10 && !(await page.evaluate((c) => document.activeElement?.value === c, category)); i += 1) {
    await page.keyboard.press('ArrowDown');
  }
  await page.keyboard.press('Space');
  await tabTo(page, 'button[value=choisir]');
  await page.keyboard.press('Enter');
  steps.push('category');

  await page.waitForURL(`${rp}/callback**`);
  await page.waitForSelector('h1');
  const text = async (id) => (await page.textContent(`#${id}`).catch(() => null));
  identity = {
    title: await page.textContent('h1'),
    given_name: await text('given_name'),
    family_name: await text('family_name'),
    rep_scope: await text('rep_scope'),
    error: await text('erreur'),
  };
  steps.push('back at the service');
} catch (e) {
  steps.push(`error: ${e.message}`);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify({ pages, identity, steps }));
