import { readFileSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import type { Command } from 'commander';
import type { ImageView } from '../images/library.js';
import type { StationsView } from '../stations/index.js';
import type { CommandContext } from './context.js';
import { CliError, EXIT } from './errors.js';
import { printJson, printTable, say, shortHash, size, when } from './output.js';
import { createStatusLine, progressLine } from './progress.js';
import { copiesCell, copyLines, severalStations } from './stations.js';

const COMPRESSED = /\.(gz|xz|zst|bz2|lz4|zip)$/i;

/** `raspios-lite.img.xz` → `raspios-lite`: the default library name of a file. */
export function imageNameFor(file: string): string {
  return basename(file).replace(COMPRESSED, '').replace(/\.img$/i, '').replace(/[^A-Za-z0-9._+-]/g, '-').replace(/^[^A-Za-z0-9]+/, '') || 'image';
}

/**
 * bmaptool's map beside the image, found as `bmaptool copy` finds it (CLI.find_and_open_bmap):
 * FILE.bmap, then FILE less one extension at a time: x.img.xz.bmap, x.img.bmap, x.bmap.
 */
export function bmapBeside(file: string): string | undefined {
  for (let path = file; ; ) {
    const candidate = `${path}.bmap`;
    if (statSync(candidate, { throwIfNoEntry: false })?.isFile()) return candidate;
    const extension = extensionOf(path);
    if (!extension) return undefined;
    path = path.slice(0, -extension.length);
  }
}

/** Python's os.path.splitext extension, which bmaptool strips: leading dots of a name are not one. */
function extensionOf(path: string): string {
  const name = basename(path);
  const dot = name.lastIndexOf('.');
  return dot > 0 && name.slice(0, dot).replace(/^\.+/, '') !== '' ? name.slice(dot) : '';
}

/** The zstd copy devices are sent: its size once built, or how far its building has come. */
function compression(image: ImageView): string {
  const c = image.block_map?.compression;
  if (!c || c.state === 'none') return '';
  return c.state === 'ready' ? size(c.bytes) : `${c.state} ${c.done}/${c.total}`;
}

export function registerImageCommands(program: Command, context: CommandContext) {
  const image = program.command('image').description('manage the image library (add, list, rm, default)');

  context
    .command(image, 'add', 'add an image file to the library (streamed to the server)')
    .argument('<file>', 'a disk image: .img, or .img.gz, .xz, .zst, .bz2, .lz4, or a .zip holding one image')
    .option('--name <name>', 'library name (default: the file name without .img and compression)')
    .option('--bmap <file>', "bmaptool's block map for it (default: FILE.bmap beside the image, if any)")
    .option('--no-bmap', 'ignore a .bmap beside the image: find the empty blocks instead')
    .option('--default', 'make it the image Deploy uses by default')
    .option('--json', 'print JSON')
    .action(async (file: string, options: { name?: string; bmap?: string | boolean; default?: boolean; json?: boolean }) => {
      let bytes: number;
      try {
        const stats = statSync(file);
        if (!stats.isFile()) throw new Error('not a regular file');
        bytes = stats.size;
      } catch (error) {
        throw new CliError(`cannot read image file ${file}: ${(error as Error).message}`, EXIT.usage);
      }
      const name = options.name ?? imageNameFor(file);
      const query = new URLSearchParams({ name, origin: basename(file) });
      if (options.default) query.set('default', 'true');
      const api = context.api(options);
      const bmapFile = typeof options.bmap === 'string' ? options.bmap : options.bmap === false ? undefined : bmapBeside(file);
      if (bmapFile) {
        let xml: string;
        try {
          xml = readFileSync(bmapFile, 'utf8');
        } catch (error) {
          throw new CliError(`cannot read bmap file ${bmapFile}: ${(error as Error).message}`, EXIT.usage);
        }
        const declared = await api.postText<{ bmap: string; mapped_bytes: number; ranges: number; checksum_type?: string | null }>('/api/images/bmaps', xml);
        query.set('bmap', declared.bmap);
        const checksums = declared.checksum_type ? `with ${declared.checksum_type} checksums` : 'without checksums';
        if (!options.json) process.stderr.write(`Using ${bmapFile}: ${size(declared.mapped_bytes)} mapped in ${declared.ranges} ranges ${checksums}.\n`);
      }
      const status = createStatusLine();
      // Elsewhere than a terminal no bar is drawn: one line says what the wait is for.
      if (!status.tty && !options.json) process.stderr.write(`Uploading ${file} (${size(bytes)}) as ${name}…\n`);
      const started = Date.now();
      const added = await api.upload<ImageView>(`/api/images?${query}`, file, bytes, (sent) => {
        if (!status.tty || options.json) return;
        const seconds = (Date.now() - started) / 1000;
        const speed = seconds > 0 ? `${(sent / seconds / 1e6).toFixed(1)} MB/s` : '';
        // After the last byte the server may still be busy with it (a block map, a spooled archive) before it answers.
        const doing = sent < bytes ? `uploading ${name}` : `sent; waiting for the server to store ${name}…`;
        status.update(progressLine(sent, bytes, `${speed}  ${doing}`));
      });
      status.done();
      if (options.json) return printJson(added);
      const map = added.block_map;
      const mapped = map ? `, ${size(map.mapped_bytes)} mapped in ${map.chunks} chunks (${map.source === 'bmap' ? 'from the bmap' : 'empty blocks skipped'})` : '';
      console.log(`Added image ${added.name}: ${size(added.size)}${mapped}, sha256 ${added.sha256}${added.default ? ' (default)' : ''}.`);
    });

  context
    .command(image, 'list', 'list the images (with each station\'s copy when several share the database)')
    .option('--json', 'print JSON')
    .action(async (options: { json?: boolean }) => {
      const api = context.api(options);
      const [{ images }, stations] = await Promise.all([api.get<{ images: ImageView[] }>('/api/images'), api.get<StationsView>('/api/stations')]);
      if (options.json) return printJson(images);
      const several = severalStations(stations);
      printTable(
        ['NAME', 'SIZE', 'MAPPED', 'ZSTD', 'SHA256', 'SOURCE', 'ADDED', 'DEFAULT', 'IN USE', ...(several ? ['COPIES'] : []), 'BROKEN'],
        images.map((i) => [
          i.name, size(i.size), size(i.block_map?.mapped_bytes), compression(i), shortHash(i.sha256), i.source, when(i.created_at),
          i.default ? 'yes' : '', i.in_use ? 'yes' : '', ...(several ? [copiesCell(i, stations)] : []), i.broken ?? '',
        ]),
        'No images yet. Add one with: cm4prov image add FILE --default (or put golden.img in the data folder).',
      );
    });

  context
    .command(image, 'show', 'one image: its size, map, sha256, state, and each station\'s copy when several share the database')
    .argument('<name>', 'image name')
    .option('--json', 'print JSON')
    .action(async (name: string, options: { json?: boolean }) => {
      const api = context.api(options);
      const [shown, stations] = await Promise.all([api.get<ImageView>(`/api/images/${encodeURIComponent(name)}`), api.get<StationsView>('/api/stations')]);
      if (options.json) return printJson(shown);
      const map = shown.block_map;
      const lines: Array<[string, string]> = [
        ['Image', `${shown.name}${shown.default ? ' (default)' : ''}`],
        ['Size', size(shown.size)],
        ['Mapped', map ? `${size(map.mapped_bytes)} in ${map.chunks} chunks (${map.source === 'bmap' ? 'from its bmap' : 'empty blocks skipped'})` : 'not yet: mapping'],
        ['zstd', map ? compression(shown) || 'sent plain' : '-'],
        ['sha256', shown.sha256],
        ['Source', `${shown.source}${shown.origin ? ` (${shown.origin})` : ''}`],
        ['Added', when(shown.created_at)],
        ['In use', shown.in_use ? 'yes: a deploy is using it' : 'no'],
        ['Broken', shown.broken ? `yes: ${shown.broken}; not deployable` : 'no'],
      ];
      if (severalStations(stations)) copyLines(shown, stations).forEach((line, i) => lines.push([i === 0 ? 'Copies' : '', line]));
      const width = Math.max(...lines.map(([label]) => label.length)) + 1;
      for (const [label, value] of lines) say(`${(label ? `${label}:` : '').padEnd(width)} ${value}`);
    });

  context
    .command(image, 'rm', 'remove an image (refused while a deploy uses it)')
    .argument('<name>', 'image name')
    .option('--json', 'print JSON')
    .action(async (name: string, options: { json?: boolean }) => {
      await context.api(options).delete(`/api/images/${encodeURIComponent(name)}`);
      if (options.json) return printJson({ removed: name });
      console.log(`Removed image ${name}.`);
    });

  context
    .command(image, 'default', 'make an image the one Deploy uses by default')
    .argument('<name>', 'image name')
    .option('--json', 'print JSON')
    .action(async (name: string, options: { json?: boolean }) => {
      const updated = await context.api(options).post<ImageView>(`/api/images/${encodeURIComponent(name)}/default`);
      if (options.json) return printJson(updated);
      console.log(`Deploy now uses ${updated.name} by default.`);
    });
}
