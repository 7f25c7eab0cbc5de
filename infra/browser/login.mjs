// The professional login in Chromium, with the keyboard alone: e-mail and TOTP code, the link
// received in MailDev, the confirmation button, the account page. axe-core runs on each page.
// Request: {"base", "email", "code", "maildev", "name"}.
// Result: {"pages": [{"url", "violations"}], "final": url, "greeted": bool}.
import { launch, axe, readRequest } from './lib.mjs';

const { base, email, code, maildev, name } = await readRequest();

// Presses Tab until the focused element matches `selector` (keyboard only, as a user would).
async function tabTo(page, selector, max = 40) {
  for (let i = 0; i < max; i += 1) {
    await page.keyboard.press('Tab');
    if (await page.evaluate((s) => document.activeElement?.matches(s), selector)) return;
  }
  throw new Error(`focus never reached ${selector}`);
}

async function loginLink() {
  for (let i = 0; i < 200; i += 1) {
    const mails = await (await fetch(`${maildev}/api/email`)).json();
    const links = mails
      .filter((m) => (m.to || []).some((t) => t.address === email))
      .map((m) => (m.text || '').split(/\s+/).find((w) => w.includes('/connexion/lien')))
      .filter(Boolean);
    if (links.length) return links[links.length - 1];
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('no login link received');
}

const browser = await launch();
const pages = [];
let final = '';
let greeted = false;
try {
  const page = await (await browser.newContext({ locale: 'fr-FR' })).newPage();
  await page.goto(`${base}/connexion`, { waitUntil: 'load' });
  pages.push({ url: page.url(), violations: await axe(page) });
  await tabTo(page, '#email');
  await page.keyboard.type(email);
  await tabTo(page, '#code');
  await page.keyboard.type(code);
  await page.keyboard.press('Enter');
  await page.waitForSelector('text=Consultez votre messagerie');
  pages.push({ url: page.url(), violations: await axe(page) });

  await page.goto(await loginLink(), { waitUntil: 'load' });
  pages.push({ url: page.url(), violations: await axe(page) });
  await tabTo(page, 'button[type=submit]');
  await page.keyboard.press('Enter');
  await page.waitForURL('**/compte');
  pages.push({ url: page.url(), violations: await axe(page) });
  final = page.url();
  greeted = (await page.textContent('main')).includes(name);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify({ pages, final, greeted }));
