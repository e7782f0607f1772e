import { createHash, type Hash } from 'node:crypto';

/**
 * bmaptool's block map (.bmap, XML): which blocks of an image hold data, with a checksum per
 * range. Read as bmaptool's BmapCopy reads it (https://github.com/yoctoproject/bmaptool):
 * versions 1.0–1.2 carry no checked checksums (1.2 files often have `sha1="…"`, checked here
 * when present), 1.3 uses SHA1 (`sha1="…"`, `<BmapFileSHA1>`), 1.4 and 2.x name the type in
 * `<ChecksumType>` (`chksum="…"`, `<BmapFileChecksum>`). The file's own checksum is the hash of
 * the file with that checksum's digits replaced by as many "0"s.
 */
export interface BmapRange {
  /** Byte offsets, end exclusive. */
  start: number;
  end: number;
  checksum: string | null;
}

/** The types BmapCreate can write: hashlib's guaranteed ones but shake (no fixed length), Node names. */
const HASHES = {
  md5: 'md5', sha1: 'sha1', sha224: 'sha224', sha256: 'sha256', sha384: 'sha384', sha512: 'sha512',
  sha512_224: 'sha512-224', sha512_256: 'sha512-256', sha3_224: 'sha3-224', sha3_256: 'sha3-256',
  sha3_384: 'sha3-384', sha3_512: 'sha3-512', blake2b: 'blake2b512', blake2s: 'blake2s256',
} as const;
export type BmapChecksumType = keyof typeof HASHES;

export interface Bmap {
  imageSize: number;
  blockSize: number;
  /** null: no range carries a checksum (versions 1.0–1.1, or made with --no-checksum). */
  checksumType: BmapChecksumType | null;
  ranges: BmapRange[];
}

export class BmapError extends Error {
  override name = 'BmapError';
}

/** A hash of the kind a bmap names. */
export const createBmapHash = (type: BmapChecksumType): Hash => createHash(HASHES[type]);

/** As the bmap endpoint: some 150,000 ranges with sha256 checksums (a real image has thousands). */
export const MAX_BMAP_CHARS = 16 * 1024 * 1024;
export const MAX_BMAP_RANGES = 250_000;
const FIELDS = ['ImageSize', 'BlockSize', 'BlocksCount', 'MappedBlocksCount', 'ChecksumType', 'BmapFileChecksum', 'BmapFileSHA1', 'BlockMap'];
const LEAVES = new Set([...FIELDS.filter((name) => name !== 'BlockMap'), 'Range']);

export function parseBmap(xml: string): Bmap {
  if (xml.length > MAX_BMAP_CHARS) throw new BmapError(`the bmap is larger than ${MAX_BMAP_CHARS / 1024 / 1024} MiB, far more than any image needs`);
  if (xml.trimStart().startsWith('-----BEGIN PGP SIGNED MESSAGE-----')) {
    throw new BmapError('the bmap is GPG-clearsigned: give the plain bmap file (signatures are not checked here)');
  }
  let root: XmlElement | undefined;
  const fields = new Map<string, XmlElement>();
  const rangeElements: XmlElement[] = [];
  for (const element of scanXml(xml)) {
    if (element.depth === 0) root = element;
    else if (element.parent && LEAVES.has(element.parent)) throw new BmapError(`the bmap has an element <${shown(element.name)}> inside <${element.parent}>`);
    else if (element.depth === 1 && FIELDS.includes(element.name)) {
      if (fields.has(element.name)) throw new BmapError(`the bmap has more than one <${element.name}>`);
      fields.set(element.name, element);
    } else if (element.depth === 2 && element.parent === 'BlockMap' && element.name === 'Range') {
      if (rangeElements.length === MAX_BMAP_RANGES) throw new BmapError(`the bmap has more than ${MAX_BMAP_RANGES} ranges`);
      rangeElements.push(element);
    }
  }
  if (root?.name !== 'bmap') throw new BmapError('this is not a bmap file (no <bmap> element)');
  const version = /^\s*(\d{1,4})\.(\d{1,4})\s*$/.exec(attributeOf(root, 'version') ?? '');
  if (!version) throw new BmapError('the bmap has no format version (<bmap version="2.0">)');
  const [major, minor] = [Number(version[1]), Number(version[2])];
  if (major < 1 || major > 2) throw new BmapError(`bmap format version ${major}.${minor} is not one bmaptool wrote (1.0 to 2.0)`);
  const number = (name: string, required = true) => {
    const text = fields.get(name)?.text.trim();
    if (text === undefined && !required) return undefined;
    const value = text && /^\d{1,16}$/.test(text) ? Number(text) : NaN;
    if (!Number.isSafeInteger(value) || value <= 0) throw new BmapError(`the bmap has no valid <${name}>`);
    return value;
  };
  const imageSize = number('ImageSize')!;
  const blockSize = number('BlockSize')!;
  if (blockSize % 512 !== 0 || blockSize > 1 << 30) throw new BmapError(`the bmap's block size ${blockSize} is not a multiple of 512 bytes up to 1 GiB`);
  const blocksCount = Math.ceil(imageSize / blockSize);
  const declaredBlocks = number('BlocksCount', false);
  if (declaredBlocks !== undefined && declaredBlocks !== blocksCount) {
    throw new BmapError(`the bmap's <BlocksCount> ${declaredBlocks} does not fit its ${imageSize}-byte image of ${blockSize}-byte blocks (${blocksCount})`);
  }

  // 1.4 was released by mistake and is 2.0 under another number (bmaptool's BmapCreate notes).
  const named = major > 1 || minor >= 4;
  const typeElement = fields.get('ChecksumType');
  const type = !named ? 'sha1' : typeElement ? checksumTypeOf(typeElement) : null;
  const attribute = named ? 'chksum' : 'sha1';
  const fileChecksum = fields.get(named ? 'BmapFileChecksum' : 'BmapFileSHA1');
  if (fileChecksum && !type) throw new BmapError(`the bmap has a <${fileChecksum.name}> but no <ChecksumType>`);
  if (fileChecksum) checkFileChecksum(xml, fileChecksum, type!);

  const ranges: BmapRange[] = [];
  let mappedBlocks = 0;
  for (const element of rangeElements) {
    const [first, last] = blockRange(element.text);
    if (last >= blocksCount) throw new BmapError(`the bmap range ${first}-${last} lies outside the image (${blocksCount} blocks)`);
    const start = first * blockSize;
    if (ranges.length && start < ranges.at(-1)!.end) throw new BmapError('the bmap ranges overlap or are out of order');
    const checksum = attributeOf(element, attribute)?.trim().toLowerCase() ?? null;
    if (checksum !== null && !/^[0-9a-f]{1,128}$/.test(checksum)) throw new BmapError(`the bmap range ${first}-${last} has a malformed checksum`);
    if (checksum !== null && !type) throw new BmapError(`the bmap range ${first}-${last} has a checksum but the bmap has no <ChecksumType>`);
    ranges.push({ start, end: Math.min((last + 1) * blockSize, imageSize), checksum });
    mappedBlocks += last - first + 1;
  }
  if (!fields.has('BlockMap')) throw new BmapError('the bmap has no <BlockMap>');
  if (ranges.length === 0) throw new BmapError('the bmap maps no ranges');
  const declaredMapped = number('MappedBlocksCount', false);
  if (declaredMapped !== undefined && declaredMapped !== mappedBlocks) {
    throw new BmapError(`the bmap's <MappedBlocksCount> says ${declaredMapped} blocks, its ranges hold ${mappedBlocks}`);
  }
  const checked = ranges.some((range) => range.checksum !== null);
  return { imageSize, blockSize, checksumType: checked ? type : null, ranges };
}

function checksumTypeOf(element: XmlElement): BmapChecksumType {
  const type = element.text.trim().toLowerCase();
  if (!Object.hasOwn(HASHES, type)) {
    throw new BmapError(`the bmap's checksum type '${shown(type)}' is not one this server checks (${Object.keys(HASHES).join(', ')})`);
  }
  return type as BmapChecksumType;
}

/** bmaptool hashes the file with the checksum's own digits replaced by "0"s (BmapCopy._verify_bmap_checksum). */
function checkFileChecksum(xml: string, element: XmlElement, type: BmapChecksumType) {
  const value = element.text.trim();
  const at = element.textAt + element.text.length - element.text.trimStart().length;
  const length = createBmapHash(type).digest('hex').length;
  if (value.length !== length || !/^[0-9a-fA-F]+$/.test(value) || xml.slice(at, at + length) !== value) {
    throw new BmapError(`the bmap's own checksum <${element.name}> is not a ${type} value`);
  }
  const hash = createBmapHash(type).update(xml.slice(0, at)).update('0'.repeat(length)).update(xml.slice(at + length));
  if (hash.digest('hex') !== value.toLowerCase()) throw new BmapError("the bmap's own checksum does not match: the file was edited or damaged");
}

/** "12-40" or "12" (spaces allowed around each number), as BmapCopy splits it. */
function blockRange(text: string): [number, number] {
  const dash = text.indexOf('-');
  const parts = dash === -1 ? [text, text] : [text.slice(0, dash), text.slice(dash + 1)];
  const [first, last] = parts.map((part) => (/^\s*\d{1,15}\s*$/.test(part) ? Number(part) : NaN)) as [number, number];
  if (Number.isNaN(first) || Number.isNaN(last)) throw new BmapError(`the bmap has a range '${shown(text.trim())}' that is not "first-last"`);
  if (last < first) throw new BmapError(`the bmap range ${first}-${last} ends before it starts`);
  return [first, last];
}

const attributeOf = (element: XmlElement, name: string) => element.attributes.find(([key]) => key === name)?.[1];

/** User text in an error message: short and printable. */
const shown = (text: string) => text.slice(0, 40).replace(/[^\x20-\x7e]/g, '?');

interface XmlElement {
  name: string;
  depth: number;
  parent: string | undefined;
  /** [name, value] pairs, in order: a Map per element costs more than the few an element has. */
  attributes: Array<[string, string]>;
  /** The text directly inside it (none once it has a child element), and where that text began. */
  text: string;
  textAt: number;
  hasChildren: boolean;
}

/**
 * The elements of an XML document, each when it closes. A scanner of the subset bmaptool writes
 * (elements, attributes, comments, the <?xml?> declaration), not an XML parser: every step moves
 * forward through the text, so time is linear in its length whatever the input (no regex that
 * backtracks, no entity expansion: a DOCTYPE is refused).
 */
function* scanXml(xml: string): Generator<XmlElement> {
  const open: XmlElement[] = [];
  let rootSeen = false;
  let at = 0;
  while (at < xml.length) {
    const lt = xml.indexOf('<', at);
    const textEnd = lt === -1 ? xml.length : lt;
    if (textEnd > at) {
      const top = open.at(-1);
      if (top && !top.hasChildren) {
        if (top.text === '') top.textAt = at;
        top.text += xml.slice(at, textEnd);
      } else if (!top && xml.slice(at, textEnd).trim()) {
        throw new BmapError(rootSeen ? 'the bmap has text after its </bmap>' : 'this is not a bmap file (no <bmap> element)');
      }
    }
    if (lt === -1) break;
    if (xml.startsWith('<!--', lt)) {
      at = endOf(xml, '-->', lt + 4, 'a comment');
      continue;
    }
    if (xml.startsWith('<?', lt)) {
      at = endOf(xml, '?>', lt + 2, 'the XML declaration');
      continue;
    }
    if (xml.startsWith('<!', lt)) throw new BmapError('the bmap holds a DOCTYPE or CDATA section, which bmaptool never writes');
    const gt = tagEnd(xml, lt);
    at = gt + 1;
    if (xml[lt + 1] === '/') {
      const name = xml.slice(lt + 2, gt).trim();
      const element = open.pop();
      if (!element || element.name !== name) throw new BmapError(`the bmap is not well-formed XML: </${shown(name)}> closes ${element ? `<${element.name}>` : 'nothing'}`);
      yield element;
      continue;
    }
    const selfClosing = xml[gt - 1] === '/';
    const element = startTag(xml.slice(lt + 1, selfClosing ? gt - 1 : gt), open);
    if (open.length === 0 && rootSeen) throw new BmapError('the bmap has more than one top element');
    rootSeen = true;
    if (open.length) open.at(-1)!.hasChildren = true;
    if (selfClosing) yield element;
    else open.push(element);
  }
  if (open.length) throw new BmapError(`the bmap ends inside <${open.at(-1)!.name}>: the file is cut`);
}

function endOf(xml: string, terminator: string, from: number, what: string): number {
  const end = xml.indexOf(terminator, from);
  if (end === -1) throw new BmapError(`the bmap ends inside ${what}: the file is cut`);
  return end + terminator.length;
}

/** Index of the `>` that ends the tag opened at `lt`, stepping over quoted attribute values. */
function tagEnd(xml: string, lt: number): number {
  for (let at = lt + 1; at < xml.length; at += 1) {
    const c = xml[at];
    if (c === '>') return at;
    if (c === '<') break;
    if (c === '"' || c === "'") {
      at = xml.indexOf(c, at + 1);
      if (at === -1) break;
    }
  }
  throw new BmapError('the bmap is not well-formed XML: a tag is not closed');
}

/** `name a="1" b='2'` → an element, its attributes read left to right in one pass. */
function startTag(inner: string, open: XmlElement[]): XmlElement {
  const name = /^[A-Za-z_][\w.:-]{0,63}/.exec(inner)?.[0];
  if (!name) throw new BmapError(`the bmap is not well-formed XML: a tag <${shown(inner)}> has no name`);
  if (open.length >= 16) throw new BmapError('the bmap nests elements deeper than bmaptool ever does');
  const attributes: Array<[string, string]> = [];
  let at = name.length;
  while (at < inner.length) {
    if (/\s/.test(inner[at]!)) {
      at += 1;
      continue;
    }
    const eq = inner.indexOf('=', at);
    const key = eq === -1 ? '' : inner.slice(at, eq).trim();
    let quoteAt = eq + 1;
    while (quoteAt < inner.length && /\s/.test(inner[quoteAt]!)) quoteAt += 1;
    const quote = inner[quoteAt];
    const close = quote === '"' || quote === "'" ? inner.indexOf(quote, quoteAt + 1) : -1;
    if (!/^[A-Za-z_][\w.:-]{0,63}$/.test(key) || close === -1 || attributes.length === 8 || attributes.some(([known]) => known === key)) {
      throw new BmapError(`the bmap is not well-formed XML: the attributes of <${name}> cannot be read`);
    }
    attributes.push([key, inner.slice(quoteAt + 1, close)]);
    at = close + 1;
  }
  const parent = open.at(-1);
  return { name, depth: open.length, parent: parent?.name, attributes, text: '', textAt: 0, hasChildren: false };
}
