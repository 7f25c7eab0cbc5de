// Loads each URL of the request ({"urls": [...]}) and reports axe-core violations:
// {"pages": [{"url", "status", "violations": [...]}]}.
import { launch, axe, readRequest } from './lib.mjs';

const { urls = [] } = await readRequest();
const browser = await launch();
const pages = [];
try {
  const context = await browser.newContext({ locale: 'fr-FR' });
  const page = await context.newPage();
  for (const url of urls) {
    const response = await page.goto(url, { waitUntil: 'load' });
    pages.push({ url, status: response ? response.status() : 0, violations: await axe(page) });
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify({ pages }));
