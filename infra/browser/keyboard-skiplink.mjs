// Keyboard only: on the page of the request ({"url"}), the first Tab reaches the "Contenu"
// skip link and Enter moves focus into the main content. Prints what happened.
import { launch, readRequest } from './lib.mjs';

const { url } = await readRequest();
const browser = await launch();
try {
  const page = await (await browser.newContext({ locale: 'fr-FR' })).newPage();
  await page.goto(url, { waitUntil: 'load' });
  await page.keyboard.press('Tab');
  const first = await page.evaluate(() => document.activeElement?.textContent?.trim());
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => location.hash === '#contenu');
  const inMain = await page.evaluate(() => !!document.activeElement?.closest('main'));
  process.stdout.write(JSON.stringify({ first, hash: await page.evaluate(() => location.hash), inMain }));
} finally {
  await browser.close();
}
