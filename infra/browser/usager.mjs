// The person's own space in Chromium at phone size (360 × 740), with the keyboard alone:
// « S'identifier avec FranceConnect », the stand-in's login typed, back to the space, their
// mandates read, one démarche stopped, and the explanation of a mandate opened. axe-core and a
// sideways-scroll check run on every page of the platform visited.
// Request: {"base", "fc_login", "demarche"}.
// Result: {"pages": [{"url", "violations", "overflow"}], "texts": {"space", "after"}, "steps": [..]}.
import { launch, axe, readRequest, tabTo } from './lib.mjs';

const { base, fc_login: fcLogin, demarche } = await readRequest();
const browser = await launch();
const pages = [];
const steps = [];
const texts = {};
const check = async (page) => pages.push({
  url: page.url(),
  violations: await axe(page),
  overflow: await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth),
});
try {
  const context = await browser.newContext({ locale: 'fr-FR', viewport: { width: 360, height: 740 } });
  const page = await context.newPage();
  await page.goto(`${base}/mes-mandats`, { waitUntil: 'load' });
  await check(page);
  await tabTo(page, 'a[href="/mes-mandats/connexion"]');
  await page.keyboard.press('Enter');
  steps.push('franceconnect');

  // The stand-in's login page: typed, as the person would.
  await page.waitForSelector('#login');
  await page.focus('#login');
  await page.keyboard.type(fcLogin);
  await page.keyboard.press('Tab');
  await page.keyboard.type('mot-de-passe');
  await page.keyboard.press('Enter');
  await page.waitForURL(`${base}/mes-mandats`, { timeout: 30_000 });
  await page.waitForSelector('main h1');
  await check(page);
  texts.space = await page.textContent('main');
  steps.push('space');

  // Stop one démarche: its link, then the confirmation button.
  await tabTo(page, `a[href$="/revocation?demarche=${demarche}"]`, 200);
  await page.keyboard.press('Enter');
  await page.waitForURL('**/revocation?demarche=*');
  await check(page);
  await tabTo(page, 'main button[type=submit]');
  await page.keyboard.press('Enter');
  await page.waitForURL('**/mes-mandats?message=revoque');
  await check(page);
  texts.after = await page.textContent('main');
  steps.push('stopped');

  // A mandate explained: in Arabic, chosen from the list with the keyboard.
  await tabTo(page, 'a[href$="/explication"]', 200);
  await page.keyboard.press('Enter');
  await page.waitForURL('**/explication');
  await tabTo(page, '#langue');
  await page.keyboard.press('Home');
  for (let i = 0; i < 10 && (await page.evaluate(() => document.activeElement.value)) !== 'ar'; i += 1) {
    await page.keyboard.press('ArrowDown');
  }
  await tabTo(page, 'form[method=get] button[type=submit]');
  await page.keyboard.press('Enter');
  await page.waitForURL('**/explication?langue=ar');
  await check(page);
  texts.explanation = await page.textContent('main');
  steps.push('explained');
} catch (e) {
  steps.push(`error: ${e.message}`);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify({ pages, texts, steps }));
