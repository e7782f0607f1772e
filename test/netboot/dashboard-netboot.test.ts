import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Browser } from 'playwright-core';
import { launchBrowser, logIn, screenshot } from '../helpers/browser.js';
import { runCli } from '../helpers/cli.js';
import { createNetbootLab, inNamespace, requireRoot } from '../helpers/netns.js';
import { dhcp, PI_MAC, RASPBERRY_PI_BOOT, startNetbootServer } from './lab-server.js';

const PASSWORD = 'provision-all-the-things';
let browser: Browser;
before(async () => {
  if (process.getuid?.() === 0) browser = await launchBrowser();
});
after(() => browser?.close());

test('a Pi that netboots but has no client yet shows its boot stage on the dashboard and in `cm4prov devices`; "Boot eMMC next" withholds its offer', async (t) => {
  if (!requireRoot(t)) return;
  const lab = createNetbootLab(t);
  const { base, token } = await startNetbootServer(t, lab, { CM4PROV_ADMIN_PASSWORD: PASSWORD });

  const context = await browser.newContext({ viewport: { width: 1360, height: 800 } });
  t.after(() => context.close());
  const page = await context.newPage();
  await logIn(page, base, PASSWORD);

  const lease = dhcp(lab, PI_MAC, 'pi', 'lease');
  const address = lease.ack!.yiaddr;
  inNamespace(lab.deviceNs, 'ip', ['addr', 'add', `${address}/24`, 'dev', 'eth0']);
  inNamespace(lab.deviceNs, 'curl', ['-sS', '--max-time', '10', '-o', '/dev/null', 'tftp://10.20.50.1/kernel8.img']);

  const row = page.locator('#device-dca632000001');
  await row.locator('[data-boot-stage]', { hasText: 'loaded kernel8.img, no client yet' }).waitFor({ timeout: 10_000 });
  assert.equal(await row.getAttribute('data-state'), 'booting');
  assert.match((await row.textContent()) ?? '', /Netbooting.*Next boot:\s*netboot/s);

  const cli = await runCli(['devices'], { CM4PROV_SERVER: base, CM4PROV_TOKEN: token });
  assert.equal(cli.code, 0, cli.stderr);
  assert.match(cli.stdout, new RegExp(`dc:a6:32:00:00:01\\s+${address.replaceAll('.', '\\.')}.*netboot\\s+loaded kernel8\\.img, no client yet`));

  await row.getByRole('button', { name: 'Boot eMMC next' }).click();
  await row.getByText(/Next boot:\s*eMMC/).waitFor({ timeout: 5_000 });
  const withheld = dhcp(lab, PI_MAC, 'pi', 'discover');
  assert.ok(!(withheld.offer?.options[43] ?? '').includes(RASPBERRY_PI_BOOT), 'no Raspberry Pi boot offer any more');
  const events = await runCli(['netboot', 'events', PI_MAC], { CM4PROV_SERVER: base, CM4PROV_TOKEN: token });
  assert.match(events.stdout, /got 10\.20\.50\.\d+ \(DHCP ack\)\n.*loaded kernel8\.img/);
  await screenshot(page, 'devices-netboot');

  await page.getByRole('link', { name: 'Netboot' }).click();
  const status = page.locator('#netboot-status');
  assert.match((await status.textContent()) ?? '', /dnsmasq\s*running\s*pid \d+.*br0: 10\.20\.50\.1 in 10\.20\.50\.0\/24.*10\.20\.50\.100-10\.20\.50\.150/s);
  assert.match((await page.locator('table.leases').textContent()) ?? '', new RegExp(`dc:a6:32:00:00:01\\s*${address.replaceAll('.', '\\.')}`));
  await screenshot(page, 'netboot');
  const netbootStatus = await runCli(['netboot', 'status'], { CM4PROV_SERVER: base, CM4PROV_TOKEN: token });
  assert.match(netbootStatus.stdout, /dnsmasq\s+running \(pid \d+\)/);
});
