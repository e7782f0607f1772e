import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NETBOOT_TAG, NO_NETBOOT_TAG } from './dnsmasq-config.js';

/**
 * The boot policy as dnsmasq sees it: in its --dhcp-hostsdir, one file per device, tagging its
 * MAC either "boot from eMMC next" (the PXE offer is withheld) or "netboot". dnsmasq re-reads a
 * changed file by inotify at once. A file is rewritten, never removed: dnsmasq 2.90 needs a
 * SIGHUP to forget a removed file, and with a hostsdir that SIGHUP crashes it
 * ("free(): invalid pointer", seen here), while a rewrite replaces the MAC's entry cleanly.
 */
export function createPolicyFiles(hostsDir: string) {
  const nameOf = (mac: string) => `${mac.replaceAll(':', '')}.conf`;

  function apply(mac: string, netbootEnabled: boolean) {
    mkdirSync(hostsDir, { recursive: true });
    const tag = netbootEnabled ? NETBOOT_TAG : NO_NETBOOT_TAG;
    const meaning = netbootEnabled ? 'may netboot' : 'boots from eMMC next';
    writeFileSync(join(hostsDir, nameOf(mac)), `# cm4-provisioning: ${mac} ${meaning}\n${mac},set:${tag}\n`);
  }

  return {
    apply,
    /** At start-up, before dnsmasq runs: exactly the given devices are held back from netboot. */
    sync(disabledMacs: string[]) {
      mkdirSync(hostsDir, { recursive: true });
      for (const name of readdirSync(hostsDir)) rmSync(join(hostsDir, name), { force: true });
      for (const mac of disabledMacs) apply(mac, false);
    },
  };
}
