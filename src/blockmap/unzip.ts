import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { removeIfPresent } from '../shared/files.js';
import { asWriteError } from '../shared/stream-errors.js';
import { DecodeError, runDecoder, runToEnd, type ProgramOutput } from './decoder-programs.js';

const MISSING = 'the unzip program is missing on the server (install the Debian package unzip)';
const NAMES_SHOWN = 5;

/**
 * The one file inside a zip, decompressed by Debian's unzip. A zip's directory sits at its end
 * (APPNOTE.TXT §4.3.6), so the upload is spooled to `spoolDir` first (its compressed size on
 * disk, for the time of the import); a zip holding no file or several is refused, naming them.
 */
export async function unzipSingle(body: AsyncIterable<Buffer>, spoolDir: string): Promise<ProgramOutput> {
  const spool = join(spoolDir, `upload-${randomUUID()}.zip`);
  const out = createWriteStream(spool, { flags: 'wx', mode: 0o600 });
  try {
    await pipeline(body, out);
    await checkSingleFile(spool);
  } catch (error) {
    await removeIfPresent(spool);
    throw error instanceof DecodeError ? error : asWriteError(error, out.bytesWritten, undefined);
  }
  // -p writes every member to stdout: here exactly one file (directories write nothing), so no
  // member name, with its wildcard characters, is ever passed to unzip. -P '' never prompts.
  const unzip = runDecoder(
    { command: 'unzip', args: ['-p', '-P', '', spool], debian: 'unzip', exitReasons: { 82: 'holds an encrypted file: upload it unencrypted' }, hidePath: spool },
    'zip',
    null,
  );
  const done = unzip.done.finally(() => removeIfPresent(spool));
  done.catch(() => undefined); // handled by whoever awaits it, maybe after it settles
  return { ...unzip, done };
}

/** Lists the zip's members (zipinfo -1): exactly one must be a file; directories do not count. */
async function checkSingleFile(spool: string) {
  const listed = await runToEnd('unzip', ['-Z1', spool]).catch((error: NodeJS.ErrnoException) => {
    throw new DecodeError(`cannot read the zip: ${error.code === 'ENOENT' ? MISSING : error.message}`);
  });
  // zipinfo exits 1 (a warning) and says "Empty zipfile." for an archive without members.
  const empty = listed.code === 1 && /^Empty zipfile\.$/m.test(listed.stdout);
  if (listed.code !== 0 && !empty) throw new DecodeError('the zip is damaged or cut: its directory (at the end of the file) cannot be read');
  const names = empty ? [] : listed.stdout.split('\n').filter((name) => name !== '' && !name.endsWith('/'));
  if (names.length === 1) return;
  if (names.length === 0) throw new DecodeError('the zip holds no file: it must hold exactly the image');
  const shown = names.slice(0, NAMES_SHOWN).map((name) => JSON.stringify(name.slice(0, 100)));
  const more = names.length > NAMES_SHOWN ? ` and ${names.length - NAMES_SHOWN} more` : '';
  throw new DecodeError(`the zip holds ${names.length} files (${shown.join(', ')}${more}), not one image: zip only the image, or upload it unzipped`);
}
