// The in-person creation of a mandate in Chromium, with the keyboard alone, through the
// FranceConnect stand-in, then its revocation. The session is handed over as cookies (the
// login journey has its own script). axe-core runs on every page of the platform visited.
// Request: {"base", "cookies": [[name, value]], "seed_hex", "fc_login"}.
// Result: {"pages": [{"url", "violations"}], "mandate": url, "revoked": bool, "steps": [..]}.
import crypto from 'node:crypto';
import { launch, axe, readRequest } from './lib.mjs';

const { base, cookies, seed_hex: seedHex, fc_login: fcLogin } = await readRequest();

function totp(seed, at = Date.now()) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(at / 1000 / 30)));
  const mac = crypto.createHmac('sha1', seed).update(counter).digest();
  const offset = mac[mac.length - 1] & 0xf;
  const value = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return String(value).padStart(6, '0');
}

async function tabTo(page, selector, max = 80) {
  for (let i = 0; i < max; i += 1) {
    await page.keyboard.press('Tab');
    if (await page.evaluate((s) => document.activeElement?.matches(s), selector)) return;
  }
  throw new Error(`focus never reached ${selector} on ${page.url()}`);
}

const browser = await launch();
const pages = [];
const steps = [];
let mandate = '';
let revoked = false;
const check = async (page) => pages.push({ url: page.url(), violations: await axe(page) });
try {
  const context = await browser.newContext({ locale: 'fr-FR' });
  await context.addCookies(cookies.map(([name, value]) => ({ name, value, url: base })));
  const page = await context.newPage();
  await page.goto(`${base}/mandats`, { waitUntil: 'load' });
  await check(page);

  await page.goto(`${base}/mandats/nouveau`, { waitUntil: 'load' });
  await check(page);
  await tabTo(page, '#categorie-social');
  await page.keyboard.press('Space');
  await tabTo(page, '#categorie-logement');
  await page.keyboard.press('Space');
  // A radio group takes one Tab stop; the arrow keys choose within it.
  await tabTo(page, 'input[name=duree]');
  for (let i = 0; i < 4 && !(await page.evaluate(() => document.activeElement?.id === 'duree-182')); i += 1) {
    await page.keyboard.press('ArrowDown');
  }
  if (!(await page.isChecked('#duree-182'))) throw new Error('durée 182 non choisie au clavier');
  await tabTo(page, 'button[type=submit]');
  await page.keyboard.press('Enter');
  steps.push('terms');

  // FranceConnect stand-in: the usager types their login there.
  await page.waitForSelector('#login');
  await page.focus('#login');
  await page.keyboard.type(fcLogin);
  await page.keyboard.press('Tab');
  await page.keyboard.type('mot-de-passe');
  await page.keyboard.press('Enter');
  steps.push('franceconnect');

  await page.waitForURL('**/mandats/preparation/**', { timeout: 30_000 });
  await page.waitForSelector('#declaration');
  await check(page);
  await tabTo(page, '#declaration');
  await page.keyboard.press('Space');
  await tabTo(page, '#code');
  await page.keyboard.type(totp(Buffer.from(seedHex, 'hex')));
  await page.keyboard.press('Enter');
  await page.waitForURL('**/mandats/*?message=cree');
  mandate = page.url().split('?')[0];
  await check(page);
  steps.push('created');

  for (const path of ['/explication']) {
    await page.goto(`${mandate}${path}`, { waitUntil: 'load' });
    await check(page);
  }
  await page.goto(mandate, { waitUntil: 'load' });
  const usager = await page.getAttribute('h1 a', 'href');
  await page.goto(`${base}${usager}`, { waitUntil: 'load' });
  await check(page);
  await page.goto(`${base}/activite`, { waitUntil: 'load' });
  await check(page);

  await page.goto(mandate, { waitUntil: 'load' });
  await tabTo(page, '#revoquer-tout');
  await page.keyboard.press('Enter');
  await page.waitForURL('**/mandats/*?message=revoque');
  await check(page);
  revoked = (await page.textContent('main')).includes('Révoqué');
  steps.push('revoked');
} catch (e) {
  steps.push(`error: ${e.message}`);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify({ pages, mandate, revoked, steps }));
