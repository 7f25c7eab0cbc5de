// Shared pieces of the browser harness: launching Debian's Chromium headless through
// playwright-core (never a downloaded browser) and running axe-core on the current page.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

export async function launch() {
  return chromium.launch({
    executablePath: process.env.AC_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
      '--no-first-run', '--disable-component-update', '--disable-sync'],
  });
}

// WCAG 2.1 levels A and AA; returns "rule-id: selector" strings for each violating node.
export async function axe(page) {
  // Evaluated through the DevTools protocol: the page's content security policy stays on.
  await page.evaluate(AXE_SOURCE);
  const result = await page.evaluate(async () =>
    // eslint-disable-next-line no-undef
    axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } }));
  const found = result.violations.flatMap((v) => v.nodes.map((n) => `${v.id}: ${n.target.join(' ')} (${v.help})`));
  return found.concat(await controlsWithoutVisibleText(page));
}

// Buttons whose words a sighted newcomer cannot read (an icon alone, the text clipped away as
// DSFR does for icon-only buttons, or words given only to screen readers): axe accepts them
// when they have an accessible name, we do not. Reported like axe's violations.
export async function controlsWithoutVisibleText(page) {
  return page.evaluate(() => {
    const out = [];
    // Our pages only (DSFR shell): not MailDev's interface showing an e-mail, for instance.
    if (!document.querySelector('link[href*="dsfr"]')) return out;
    const controls = document.querySelectorAll(
      'button, a.fr-btn, [role=button], input[type=submit], input[type=button]');
    for (const el of controls) {
      if (!el.checkVisibility({ visibilityProperty: true, opacityProperty: true })) continue;
      const box = el.getBoundingClientRect();
      if (box.width === 0 || box.height === 0) continue;
      let readable = false;
      if (el.tagName === 'INPUT') {
        readable = el.value.trim().length > 0;
      } else {
        const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
        for (let node = walker.nextNode(); node && !readable; node = walker.nextNode()) {
          if (!node.textContent.trim() || node.parentElement.closest('.fr-sr-only')) continue;
          const range = document.createRange();
          range.selectNodeContents(node);
          const r = range.getBoundingClientRect();
          const style = getComputedStyle(node.parentElement);
          readable = r.width > 0 && r.height > 0 && parseFloat(style.fontSize) > 0
            && style.color !== 'transparent'
            && r.left >= box.left - 1 && r.right <= box.right + 1
            && r.top >= box.top - 1 && r.bottom <= box.bottom + 1;
        }
      }
      if (!readable) {
        const name = (el.getAttribute('aria-label') || el.title || el.textContent || '').trim();
        const id = el.id ? `#${el.id}` : '';
        out.push(`visible-text: ${el.tagName.toLowerCase()}${id}.${[...el.classList].join('.')} `
          + `(« ${name} » : un bouton doit montrer son texte, pas seulement une icône)`);
      }
    }
    return out;
  });
}

export async function readRequest() {
  let data = '';
  for await (const chunk of process.stdin) data += chunk;
  return JSON.parse(data || '{}');
}

// Presses Tab until the focused element matches `selector` (keyboard only, as a user would).
export async function tabTo(page, selector, max = 80) {
  for (let i = 0; i < max; i += 1) {
    await page.keyboard.press('Tab');
    if (await page.evaluate((s) => document.activeElement?.matches(s), selector)) return;
  }
  throw new Error(`focus never reached ${selector} on ${page.url()}`);
}

// Chooses the option of value `value` in the focused-by-Tab <select> `selector` with the
// arrow keys (Home, then ArrowDown), as a keyboard user does on a closed list.
export async function chooseOption(page, selector, value, max = 80) {
  await tabTo(page, selector, max);
  await page.keyboard.press('Home');
  const count = await page.evaluate((s) => document.querySelector(s).options.length, selector);
  for (let i = 0; i < count; i += 1) {
    if (await page.evaluate(() => document.activeElement.value) === value) return;
    await page.keyboard.press('ArrowDown');
  }
  throw new Error(`option ${value} never chosen in ${selector} on ${page.url()}`);
}

// The newest link containing `path` that MailDev received for `email`, once more than `known`
// such links arrived.
export async function mailedLink(maildev, email, path, known = 0) {
  for (let i = 0; i < 200; i += 1) {
    const mails = await (await fetch(`${maildev}/api/email`)).json();
    const links = mails
      .filter((m) => (m.to || []).some((t) => t.address === email))
      .map((m) => (m.text || '').split(/\s+/).find((w) => w.includes(path)))
      .filter(Boolean);
    if (links.length > known) return links[links.length - 1];
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no ${path} link received`);
}

// The newest login link MailDev received for `email`.
export async function loginLink(maildev, email) {
  return mailedLink(maildev, email, '/connexion/lien');
}
