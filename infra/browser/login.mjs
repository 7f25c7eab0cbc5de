// The professional login in Chromium, with the keyboard alone: e-mail and TOTP code, the link
// received in MailDev, the confirmation button, the account page. axe-core runs on each page.
// Request: {"base", "email", "code", "maildev", "name"}.
// Result: {"pages": [{"url", "violations"}], "final": url, "greeted": bool}.
import { launch, axe, readRequest, tabTo, loginLink } from './lib.mjs';

const { base, email, code, maildev, name } = await readRequest();

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

  await page.goto(await loginLink(maildev, email), { waitUntil: 'load' });
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
