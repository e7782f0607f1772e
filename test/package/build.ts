import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { check, REPO_DIR } from './clean-root.js';

export const BUILD_SCRIPT = join(REPO_DIR, 'scripts', 'build-deb.sh');
export const PACKAGE_VERSION = (JSON.parse(readFileSync(join(REPO_DIR, 'package.json'), 'utf8')) as { version: string }).version;

/** Runs scripts/build-deb.sh into `out`; the .deb's path (its last line) and the seconds it took. */
export function buildDeb(out: string, version?: string): { deb: string; seconds: number } {
  const started = process.hrtime.bigint();
  const stdout = check('sh', [BUILD_SCRIPT, '--out', out, ...(version ? ['--version', version] : [])], { timeoutMs: 600_000 });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { deb: stdout.trim().split('\n').at(-1)!, seconds };
}

/** One field of a .deb's control data (dpkg-deb --field). */
export const field = (deb: string, name: string) => check('dpkg-deb', ['--field', deb, name]).trim();

/** The paths a .deb installs, without the leading `.`. */
export const contents = (deb: string) =>
  check('dpkg-deb', ['--contents', deb]).split('\n').filter(Boolean).map((line) => line.split(/\s+/).slice(5).join(' ').replace(/^\./, '').split(' -> ')[0]!);
