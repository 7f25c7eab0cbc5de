// Loads each URL of the request ({"urls": [...], "cookies": [{"name", "value", "url"}]}) and
// reports axe-core violations: {"pages": [{"url", "status", "violations": [...]}]}. Cookies let
// a test check pages behind a session it opened itself.
import { launch, axe, readRequest } from './lib.mjs';

const { urls = [], cookies = [] } = await readRequest();
const browser = await launch();
const pages = [];
try {
  const context = await browser.newContext({ locale: 'fr-FR' });
  if (cookies.length) await context.addCookies(cookies);
  const page = await context.newPage();
  for (const url of urls) {
    const response = await page.goto(url, { waitUntil: 'load' });
    pages.push({ url, final: page.url(), status: response ? response.status() : 0, violations: await axe(page) });
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify({ pages }));
