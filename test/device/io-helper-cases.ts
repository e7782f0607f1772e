import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { tempDir } from '../helpers/server.js';

const MIB = 1024 * 1024;
const TARGET_BYTES = 24 * MIB;
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

interface Chunk {
  index: number;
  offset: number;
  length: number;
  sha256: string;
}

/** An image with data in some ranges, its chunk list (as the client keeps it) and both streams. */
function chunkFixture(dir: string) {
  const image = Buffer.alloc(16 * MIB);
  const ranges = [[0, MIB], [MIB, 2 * MIB], [4 * MIB, 3 * MIB + 4096], [9 * MIB, 512 * 1024], [12 * MIB, 4 * MIB]] as const;
  const chunks: Chunk[] = ranges.map(([offset, length], index) => {
    randomBytes(length).copy(image, offset);
    return { index, offset, length, sha256: sha256(image.subarray(offset, offset + length)) };
  });
  const chunkList = join(dir, 'chunks');
  writeFileSync(chunkList, chunks.map((c) => `${c.index} ${c.offset} ${c.length} ${c.sha256} 0 0\n`).join(''));
  const bytesOf = (c: Chunk) => image.subarray(c.offset, c.offset + c.length);
  const plain = (from = 0) => Buffer.concat(chunks.slice(from).map(bytesOf));
  // One zstd frame per chunk, as the server's chunk stream has them.
  const zstd = (from = 0) => Buffer.concat(chunks.slice(from).map((c) => execFileSync('zstd', ['-q', '-c', '-3'], { input: bytesOf(c), maxBuffer: 16 * MIB })));
  return { image, chunks, chunkList, plain, zstd };
}

export interface IoRun {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

/** Runs cm4prov-io through COMMAND (the binary, or an emulator and the binary) with ARGS. */
export function runIo(command: string[], args: string[], input?: Buffer, closeStdoutEarly = false): Promise<IoRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(command[0]!, [...command.slice(1), ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (data: Buffer) => {
      out.push(data);
      if (closeStdoutEarly) child.stdout.destroy();
    });
    child.stderr.on('data', (data: Buffer) => (stderr += data));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr }));
    child.stdin.on('error', () => {}); // a helper that stops early closes its end
    child.stdin.end(input ?? Buffer.alloc(0));
  });
}

function freshTarget(path: string, fill = 0) {
  writeFileSync(path, Buffer.alloc(0));
  truncateSync(path, TARGET_BYTES);
  if (fill) writeFileSync(path, Buffer.alloc(2 * MIB, fill), { flag: 'r+' });
}

/** The statuses the client tells apart (device/io-helper/README.md). */
const EXIT = { done: 0, ioError: 1, usage: 2, shortStream: 3, mismatch: 4, outputClosed: 5 };

/**
 * The same cases for every build of cm4prov-io: `command()` gives the argv prefix that runs it
 * (known only once a `before` hook has built it), `dir` where its files may go.
 */
export function ioHelperCases(command: () => string[], dirFor: (t: TestContext) => string = (t) => tempDir(t)) {
  test('write: zstd frames onto their offsets, every chunk read back and noted as verified in order', async (t) => {
    const dir = dirFor(t);
    const f = chunkFixture(dir);
    const target = join(dir, 'emmc.img');
    freshTarget(target, 0xa5);
    const verified = join(dir, 'verified');
    const status = join(dir, 'status');
    const run = await runIo(command(), ['write', '--chunks', f.chunkList, '--from', '0', '--target', target, '--verified', verified, '--status', status, '--zstd'], f.zstd());
    assert.equal(run.code, EXIT.done, run.stderr);
    assert.equal(run.stdout.toString(), 'complete\n');
    const written = readFileSync(target);
    for (const c of f.chunks) assert.ok(written.subarray(c.offset, c.offset + c.length).equals(f.image.subarray(c.offset, c.offset + c.length)), `chunk ${c.index} is at its offset`);
    assert.ok(written.subarray(3 * MIB, 4 * MIB).equals(Buffer.alloc(MIB)), 'nothing is written between chunks');
    assert.equal(readFileSync(verified, 'utf8'), f.chunks.map((c) => `${c.sha256}\n`).join(''));
    const total = f.chunks.reduce((sum, c) => sum + c.length, 0);
    assert.equal(readFileSync(status, 'utf8'), `${total} ${total} done\n`);
  });

  test('write: a plain stream from a later chunk on (a resumed attempt) appends to the verified list', async (t) => {
    const dir = dirFor(t);
    const f = chunkFixture(dir);
    const target = join(dir, 'emmc.img');
    freshTarget(target);
    const verified = join(dir, 'verified');
    writeFileSync(verified, `${f.chunks[0]!.sha256}\n${f.chunks[1]!.sha256}\n`);
    const run = await runIo(command(), ['write', '--chunks', f.chunkList, '--from', '2', '--target', target, '--verified', verified], f.plain(2));
    assert.equal(run.code, EXIT.done, run.stderr);
    assert.equal(readFileSync(verified, 'utf8'), f.chunks.map((c) => `${c.sha256}\n`).join(''));
    const c = f.chunks[3]!;
    assert.ok(readFileSync(target).subarray(c.offset, c.offset + c.length).equals(f.image.subarray(c.offset, c.offset + c.length)));
  });

  test('write: a stream cut inside a chunk ends "short N" (exit 3) with the chunks before it verified', async (t) => {
    const dir = dirFor(t);
    const f = chunkFixture(dir);
    const target = join(dir, 'emmc.img');
    freshTarget(target);
    const verified = join(dir, 'verified');
    const status = join(dir, 'status');
    const cut = f.chunks[0]!.length + f.chunks[1]!.length + 1000;
    const run = await runIo(command(), ['write', '--chunks', f.chunkList, '--from', '0', '--target', target, '--verified', verified, '--status', status], f.plain().subarray(0, cut));
    assert.equal(run.code, EXIT.shortStream, run.stderr);
    assert.equal(run.stdout.toString(), 'short 2\n');
    assert.equal(readFileSync(verified, 'utf8'), `${f.chunks[0]!.sha256}\n${f.chunks[1]!.sha256}\n`);
    const whole = f.chunks[0]!.length + f.chunks[1]!.length;
    assert.match(readFileSync(status, 'utf8'), new RegExp(`^${whole} ${whole} `), 'the partial chunk is not counted');
  });

  test('write: a chunk that reads back otherwise than its sha256 ends "mismatch" (exit 4), naming it and what it read', async (t) => {
    const dir = dirFor(t);
    const f = chunkFixture(dir);
    const target = join(dir, 'emmc.img');
    freshTarget(target);
    const wrong = 'ab'.repeat(32);
    writeFileSync(f.chunkList, readFileSync(f.chunkList, 'utf8').replace(f.chunks[1]!.sha256, wrong));
    const verified = join(dir, 'verified');
    const run = await runIo(command(), ['write', '--chunks', f.chunkList, '--from', '0', '--target', target, '--verified', verified, '--zstd'], f.zstd());
    assert.equal(run.code, EXIT.mismatch, run.stderr);
    const c = f.chunks[1]!;
    assert.equal(run.stdout.toString(), `mismatch 1 ${c.offset} ${c.length} ${c.sha256} ${wrong}\n`);
    assert.equal(readFileSync(verified, 'utf8'), `${f.chunks[0]!.sha256}\n`, 'nothing after the bad chunk counts as verified');
  });

  test('write: a broken zstd stream ends "short" at the chunk it broke in, with the reason on stderr', async (t) => {
    const dir = dirFor(t);
    const f = chunkFixture(dir);
    const target = join(dir, 'emmc.img');
    freshTarget(target);
    const firstFrame = execFileSync('zstd', ['-q', '-c'], { input: f.image.subarray(0, f.chunks[0]!.length), maxBuffer: 16 * MIB });
    const stream = Buffer.concat([firstFrame, Buffer.from('not a zstd frame at all')]);
    const run = await runIo(command(), ['write', '--chunks', f.chunkList, '--from', '0', '--target', target, '--verified', join(dir, 'verified'), '--zstd'], stream);
    assert.equal(run.code, EXIT.shortStream, run.stderr);
    assert.equal(run.stdout.toString(), 'short 1\n');
    assert.match(run.stderr, /^cm4prov-io: the stream broke: .+/m);
  });

  test('hash: the sha256 of the first N bytes of the target, holes included, and its progress', async (t) => {
    const dir = dirFor(t);
    const target = join(dir, 'emmc.img');
    freshTarget(target);
    const data = randomBytes(3 * MIB);
    writeFileSync(target, data, { flag: 'r+' });
    const fd = openSync(target, 'r+');
    writeSync(fd, data, 0, MIB, 13 * MIB); // data after a hole
    closeSync(fd);
    const bytes = 20 * MIB + 512;
    const status = join(dir, 'status');
    const run = await runIo(command(), ['hash', '--target', target, '--bytes', String(bytes), '--status', status]);
    assert.equal(run.code, EXIT.done, run.stderr);
    assert.equal(run.stdout.toString(), `${sha256(readFileSync(target).subarray(0, bytes))}\n`);
    assert.equal(readFileSync(status, 'utf8'), `${bytes} 0 done\n`);
  });

  test('backup: one pass gives the target plain or zstd-compressed on stdout and its sha256 in a file', async (t) => {
    const dir = dirFor(t);
    const target = join(dir, 'emmc.img');
    freshTarget(target);
    writeFileSync(target, randomBytes(5 * MIB + 300), { flag: 'r+' });
    const whole = readFileSync(target);
    const shaFile = join(dir, 'sha');
    const plain = await runIo(command(), ['backup', '--target', target, '--sha256-to', shaFile]);
    assert.equal(plain.code, EXIT.done, plain.stderr);
    assert.ok(plain.stdout.equals(whole), 'the plain stream is the target');
    assert.equal(readFileSync(shaFile, 'utf8'), `${sha256(whole)}\n`);
    const compressed = await runIo(command(), ['backup', '--target', target, '--sha256-to', shaFile, '--zstd', '3', '--bytes', String(20 * MIB)]);
    assert.equal(compressed.code, EXIT.done, compressed.stderr);
    assert.ok(compressed.stdout.length < 7 * MIB, `zeros compress (${compressed.stdout.length} bytes)`);
    assert.ok(execFileSync('zstd', ['-d', '-c'], { input: compressed.stdout, maxBuffer: 64 * MIB }).equals(whole.subarray(0, 20 * MIB)));
    assert.equal(readFileSync(shaFile, 'utf8'), `${sha256(whole.subarray(0, 20 * MIB))}\n`);
  });

  test('backup: an output closed before the end (the upload died) is exit 5 with a sentence', async (t) => {
    const dir = dirFor(t);
    const target = join(dir, 'emmc.img');
    freshTarget(target);
    writeFileSync(target, randomBytes(8 * MIB), { flag: 'r+' });
    const run = await runIo(command(), ['backup', '--target', target, '--sha256-to', join(dir, 'sha')], undefined, true);
    assert.equal(run.code, EXIT.outputClosed, run.stderr);
    assert.match(run.stderr, /the output was closed before the end/);
    assert.equal(existsSync(join(dir, 'sha')), false, 'no checksum for a backup that did not go out whole');
  });

  test('bad arguments are exit 2 and a missing target exit 1, each with a sentence', async (t) => {
    const dir = dirFor(t);
    for (const args of [['frobnicate'], ['write', '--chunks'], ['hash', '--target', 'x', '--bytes', '-5'], ['backup', '--target', 'x', '--zstd', '42', '--sha256-to', 'y']]) {
      const run = await runIo(command(), args);
      assert.equal(run.code, EXIT.usage, `${args.join(' ')}: ${run.stderr}`);
      assert.match(run.stderr, /^cm4prov-io: .+\nusage: cm4prov-io /m, args.join(' '));
    }
    const missing = await runIo(command(), ['hash', '--target', join(dir, 'no-such-emmc')]);
    assert.equal(missing.code, EXIT.ioError);
    assert.match(missing.stderr, /^cm4prov-io: cannot open .*no-such-emmc: No such file or directory$/m);
  });
}
