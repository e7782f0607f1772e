import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

const SOURCE_DIR = resolve(import.meta.dirname, '../../device/io-helper');
const OUT_DIR = join(SOURCE_DIR, 'build', 'native');
export const IO_HELPER = join(OUT_DIR, 'cm4prov-io');

/**
 * cm4prov-io built for this machine (make, once; test files running at once share it behind a
 * lock). The folder it is in goes on a client's PATH, as the initramfs has it in /bin.
 */
let built = false;

export function ioHelperDir(): string {
  if (built && existsSync(IO_HELPER)) return OUT_DIR; // once per test process: make runs once, not per client
  try {
    execFileSync('flock', [join(SOURCE_DIR, '.build.lock'), 'make', '-s', '-C', SOURCE_DIR, `OUT=${OUT_DIR}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    const output = (error as { stderr?: Buffer }).stderr?.toString() ?? String(error);
    throw new Error(`cm4prov-io could not be built (scripts/install-test-deps.sh installs gcc, libssl-dev and libzstd-dev): ${output}`);
  }
  if (!existsSync(IO_HELPER)) throw new Error(`make left no ${IO_HELPER}`);
  built = true;
  return OUT_DIR;
}
