#!/usr/bin/env node
// Compiles src/ into dist/ (plain JavaScript, same layout, other files copied) so that the
// installed `cm4prov` starts without the TypeScript loader: the loader's worker thread costs
// ~40 MB of memory in a long-running server. Runs at `npm install` (the `prepare` script) and
// with `npm run build`. Type checking stays with `npm run typecheck`; this only strips types.
// bin/cm4prov.js runs the sources through tsx whenever dist/ is missing or older than src/.
import { copyFileSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { transform } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(root, 'src');
const target = join(root, 'dist');
const staging = join(root, `dist.building-${process.pid}`);

rmSync(staging, { recursive: true, force: true });
let files = 0;
for (const entry of readdirSync(source, { recursive: true, withFileTypes: true })) {
  if (!entry.isFile()) continue;
  const from = join(entry.parentPath, entry.name);
  const to = join(staging, relative(source, from));
  mkdirSync(dirname(to), { recursive: true });
  if (entry.name.endsWith('.ts')) {
    const { code } = await transform(readFileSync(from, 'utf8'), { loader: 'ts', format: 'esm', target: 'node20', sourcefile: from });
    writeFileSync(to.replace(/\.ts$/, '.js'), code);
  } else {
    copyFileSync(from, to);
  }
  files += 1;
}
// Written last: its time is what bin/cm4prov.js compares with the sources'.
writeFileSync(join(staging, '.built'), `${new Date().toISOString()}\n`);
rmSync(target, { recursive: true, force: true });
renameSync(staging, target);
console.log(`cm4prov: built ${files} files into dist/`);
