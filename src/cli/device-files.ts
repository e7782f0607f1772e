import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { CommandContext } from './context.js';
import { CliError, EXIT } from './errors.js';
import { printJson, printTable, say } from './output.js';

interface ProfileFileView {
  partition: number;
  fs: 'vfat' | 'ext4';
  path: string;
  mode: string;
  append: boolean;
  template: string;
}
interface ProfileView {
  name: string;
  files: ProfileFileView[];
  next_sequence: number;
}
interface TableView {
  key_column: string;
  columns: string[];
  rows: number;
  imported_at: number;
}

/**
 * `PART[:FS]:[+]PATH=TEMPLATE_FILE`, e.g. `1:/user-data=user-data.tmpl`, `2:ext4:/etc/hostname=h.tmpl`;
 * `+` before the path appends the text to the image's file (`1:+/cmdline.txt=extra.tmpl`).
 */
export function parseFileOption(spec: string): Omit<ProfileFileView, 'mode'> {
  const match = /^([1-4])(?::(vfat|ext4))?:(\+)?(\/[^=]*)=(.+)$/.exec(spec);
  if (!match) {
    throw new CliError(
      `--file takes PART:PATH=TEMPLATE_FILE (or PART:ext4:PATH=…; +PATH appends), e.g. 1:/user-data=user-data.tmpl or 1:+/cmdline.txt=extra.tmpl, not '${spec}'`,
      EXIT.usage,
    );
  }
  return {
    partition: Number(match[1]),
    fs: (match[2] as 'vfat' | 'ext4' | undefined) ?? 'vfat',
    path: match[4]!,
    append: match[3] === '+',
    template: readText(match[5]!, 'template'),
  };
}

/** `1:/user-data`, or `1:+/cmdline.txt` for a file appended to. */
const fileLabel = (file: ProfileFileView) => `${file.partition}:${file.append ? '+' : ''}${file.path}`;

function readText(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw new CliError(`cannot read the ${what} ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, EXIT.usage);
  }
}

/** `cm4prov profiles …` and `cm4prov device-table …`: per-device files written after a deploy. */
export function registerDeviceFileCommands(program: Command, context: CommandContext) {
  const profiles = context
    .command(program, 'profiles', 'per-device file profiles written after a deploy (profiles list, add, show, rm)')
    .enablePositionalOptions();

  context
    .command(profiles, 'list', 'the profiles and their files')
    .option('--json', 'print JSON')
    .action(async (options: { json?: boolean }) => {
      const { profiles: all } = await context.api(options).get<{ profiles: ProfileView[] }>('/api/profiles');
      if (options.json) return printJson(all);
      printTable(['profile', 'files', 'next sequence'], all.map((p) => [p.name, p.files.map(fileLabel).join(' '), p.next_sequence]), 'No profiles yet.');
    });

  context
    .command(profiles, 'add', 'create or replace a profile')
    .argument('<name>', 'profile name')
    .option(
      '--file <spec>',
      "PART:PATH=TEMPLATE_FILE (FAT) or PART:ext4:PATH=TEMPLATE_FILE; +PATH appends to the image's file (cmdline.txt: to its line); repeat for each file",
      (spec: string, all: string[] = []) => [...all, spec],
    )
    .option('--json', 'print JSON')
    .action(async (name: string, options: { file?: string[]; json?: boolean }) => {
      if (!options.file?.length) throw new CliError('give at least one --file PART:PATH=TEMPLATE_FILE', EXIT.usage);
      const profile = await context.api(options).post<ProfileView>('/api/profiles', { name, files: options.file.map(parseFileOption) });
      if (options.json) return printJson(profile);
      say(`Profile ${profile.name} saved: ${profile.files.length} files.`);
    });

  context
    .command(profiles, 'show', 'a profile with its templates')
    .argument('<name>', 'profile name')
    .option('--json', 'print JSON')
    .action(async (name: string, options: { json?: boolean }) => {
      const profile = await context.api(options).get<ProfileView>(`/api/profiles/${encodeURIComponent(name)}`);
      if (options.json) return printJson(profile);
      say(`Profile ${profile.name} (next sequence ${profile.next_sequence})`);
      for (const file of profile.files) {
        say(`--- partition ${file.partition} (${file.fs}) ${file.path} mode ${file.mode}${file.append ? ", appended to the image's file" : ''}`);
        // Line by line: each is shown with control characters escaped (say), newlines kept.
        for (const line of file.template.replace(/\n$/, '').split('\n')) say(line);
      }
    });

  context
    .command(profiles, 'rm', 'remove a profile')
    .argument('<name>', 'profile name')
    .option('--json', 'print JSON')
    .action(async (name: string, options: { json?: boolean }) => {
      await context.api(options).delete(`/api/profiles/${encodeURIComponent(name)}`);
      if (options.json) return printJson({ ok: true });
      say(`Profile ${name} removed.`);
    });

  const table = context.command(program, 'device-table', 'the device table: per-device values for {{table.COLUMN}} (device-table import, show)').enablePositionalOptions();

  context
    .command(table, 'import', 'replace the device table with a CSV (first row: column names; a serial or mac column)')
    .argument('<file>', 'CSV file')
    .option('--json', 'print JSON')
    .action(async (file: string, options: { json?: boolean }) => {
      const result = await context.api(options).post<{ table: TableView }>('/api/device-table', { csv: readText(file, 'CSV') });
      if (options.json) return printJson(result.table);
      say(`Device table imported: ${result.table.rows} rows keyed by ${result.table.key_column}; columns ${result.table.columns.join(', ')}.`);
    });

  context
    .command(table, 'show', 'the columns and number of rows (never the values)')
    .option('--json', 'print JSON')
    .action(async (options: { json?: boolean }) => {
      const result = await context.api(options).get<{ table: TableView | null }>('/api/device-table');
      if (options.json) return printJson(result.table);
      if (!result.table) return say('No device table has been imported.');
      say(`${result.table.rows} rows keyed by ${result.table.key_column}; columns ${result.table.columns.join(', ')}; imported ${new Date(result.table.imported_at).toISOString()}.`);
    });
}
