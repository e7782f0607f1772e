import { badRequest } from '../shared/errors.js';
import type { ProfileFile } from './store.js';
import { namesIn, unknownName } from './template.js';

/** A profile as the admin API and the CLI send it; `mode` defaults to 0644, `append` to false. */
export interface ProfileInput {
  name: string;
  files: Array<Omit<ProfileFile, 'mode' | 'append'> & { mode?: string; append?: boolean }>;
}

/**
 * The Raspberry Pi firmware passes the first line of cmdline.txt to the kernel as its command
 * line ("all on one line", Raspberry Pi documentation, "cmdline.txt"): text appended to it goes
 * on that line, after one space.
 */
export const appendsToFirstLine = (path: string) => /(^|\/)cmdline\.txt$/i.test(path);

export const PROFILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** Absolute, no spaces (the device's file list is space-separated), no `.` or `..` parts. */
const FILE_PATH = /^(\/[A-Za-z0-9_+@=,~-][A-Za-z0-9._+@=,~-]*)+$/;
const MODE = /^0?[0-7]{3}$/;
export const MAX_FILES = 64;

/**
 * Checks a profile before it is stored and returns its files as stored (modes as four octal
 * digits). Every refusal is one sentence naming the file: a bad path, a duplicate, or a
 * template naming something that is not a variable.
 */
export function checkProfile(input: ProfileInput): ProfileFile[] {
  if (!PROFILE_NAME.test(input.name)) {
    throw badRequest(`profile name '${input.name}' is not allowed: use up to 64 letters, digits, '.', '_' or '-', starting with a letter or digit`);
  }
  if (input.files.length === 0) throw badRequest(`profile '${input.name}' has no files`);
  if (input.files.length > MAX_FILES) throw badRequest(`profile '${input.name}' has ${input.files.length} files; at most ${MAX_FILES} are allowed`);
  const seen = new Set<string>();
  return input.files.map((file) => {
    const where = `file ${file.path} (partition ${file.partition}, ${file.fs})`;
    if (!FILE_PATH.test(file.path) || file.path.split('/').some((part) => part === '..' || part === '.') || file.path.length > 255) {
      throw badRequest(`${where}: the path must be absolute, at most 255 characters, without spaces, '.' or '..' parts`);
    }
    const key = `${file.partition}:${file.path.toLowerCase()}`;
    if (seen.has(key)) throw badRequest(`${where} is listed twice`);
    seen.add(key);
    const mode = file.mode ?? '0644';
    if (!MODE.test(mode)) throw badRequest(`${where}: mode '${mode}' is not octal permission bits like 0644`);
    for (const name of namesIn(file.template)) {
      const problem = unknownName(name);
      if (problem) throw badRequest(`${where}: ${problem}`);
    }
    const append = file.append === true;
    if (append && file.template === '') throw badRequest(`${where} is appended to, but its template is empty: there is nothing to append`);
    if (append && appendsToFirstLine(file.path) && /[\r\n]/.test(oneLine(file.template))) {
      throw badRequest(`${where} is appended to the kernel command line, which is one line, but its template has a line break before its end`);
    }
    return { partition: file.partition, fs: file.fs, path: file.path, mode: mode.padStart(4, '0'), append, template: file.template };
  });
}

/** Text appended to cmdline.txt without the one line break a template file ends with. */
export const oneLine = (text: string) => text.replace(/\r?\n$/, '');
