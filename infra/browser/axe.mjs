// Loads each URL of the request ({"urls": [...], "cookies": [{"name", "value", "url"}],
// "viewport": {"width", "height"}?}) and reports axe-core violations and whether the page is
// wider than the window (a phone must not scroll sideways):
// {"pages": [{"url", "final", "status", "violations": [...], "overflow": bool}]}. Cookies let a
// test check pages behind a session it opened itself.
import { launch, axe, readRequest } from './lib.mjs';

const { urls = [], cookies = [], viewport = null } = await readRequest();
const browser = await launch();
const pages = [];
try {
  const context = await browser.newContext(viewport ? { locale: 'fr-FR', viewport } : { locale: 'fr-FR' });
  if (cookies.length) await context.addCookies(cookies);
  const page = await context.newPage();
  for (const url of urls) {
    const response = await page.goto(url, { waitUntil: 'load' });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
    pages.push({ url, final: page.url(), status: response ? response.status() : 0, violations: await axe(page), overflow });
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify({ pages }));
