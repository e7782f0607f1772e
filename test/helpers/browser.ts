import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { TestContext } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';

const ROOT = resolve(import.meta.dirname, '../..');
export const ARTIFACTS = join(ROOT, 'test-artifacts', 'screenshots');
const README_SHOTS = join(ROOT, 'docs', 'screenshots');

/**
 * Debian's Chromium, driven by playwright-core (no browser download). The flags keep it from
 * reaching for the internet, which this machine does not have.
 */
export function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
    ],
  });
}

/** Saves a screenshot as a test artifact; with UPDATE_SCREENSHOTS=1 also as the README's copy. */
export async function screenshot(page: Page, name: string) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const shot = await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
  if (process.env.UPDATE_SCREENSHOTS === '1') {
    mkdirSync(README_SHOTS, { recursive: true });
    await page.screenshot({ path: join(README_SHOTS, `${name}.png`), fullPage: true });
  }
  return shot;
}

export async function logIn(page: Page, baseUrl: string, password: string) {
  await page.goto(`${baseUrl}/login`);
  await page.getByLabel('Admin password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForURL(`${baseUrl}/`);
}

/** A page of its own browser context (closed when the test ends), logged in to the dashboard. */
export async function loggedInPage(
  browser: Browser,
  t: TestContext,
  baseUrl: string,
  password: string,
  options: { viewport?: { width: number; height: number }; acceptDownloads?: boolean } = {},
): Promise<Page> {
  const context = await browser.newContext({ viewport: options.viewport ?? { width: 1280, height: 900 }, acceptDownloads: options.acceptDownloads });
  t.after(() => context.close());
  const page = await context.newPage();
  await logIn(page, baseUrl, password);
  return page;
}
