import { formatBytes } from '../shared/format.js';

/**
 * What a finished job proved, one word per kind of proof. Every surface (API, dashboard, CLI,
 * history, CSV) shows the sentence made here, so none of them says more than was checked: a
 * sparse deploy proves its mapped ranges, not the whole eMMC; a backup without the device's own
 * checksum was hashed by the server only.
 */
export type Verified =
  /** deploy: the device read back the image's length and it hashed to the image's sha256 */
  | 'image'
  /** deploy with full match: the whole target (image length) hashed to the image, unmapped as zeros */
  | 'target'
  /** deploy: every mapped range was read back and matched its own sha256 (bmaptool's guarantee) */
  | 'mapped_ranges'
  /** deploy: the whole image was sent, and the device confirmed nothing */
  | 'sent'
  /** backup: the device's sha256 of what it read equals the sha256 of what arrived */
  | 'device_sha256'
  /** backup: the eMMC's whole length arrived; only the server hashed it */
  | 'server_sha256'
  /** backup: a body arrived, but the eMMC's size was never given, so it may not be whole */
  | 'size_unknown';

export const VERIFIED_SCOPES: readonly Verified[] = ['image', 'target', 'mapped_ranges', 'sent', 'device_sha256', 'server_sha256', 'size_unknown'];

export interface VerificationView {
  scope: Verified;
  /** True only when bytes were read back and compared by the device, or its own hash matched. */
  checked: boolean;
  /** The bytes the proof covers (read back, sent or received). */
  bytes: number | null;
  /** Sparse deploys: how many mapped ranges were read back and matched. */
  ranges: number | null;
  /** The one sentence every surface shows. */
  summary: string;
}

export interface VerificationFacts {
  verified: Verified | null;
  verified_bytes: number | null;
  verified_ranges: number | null;
  sha256: string | null;
}

const CHECKED: ReadonlySet<Verified> = new Set(['image', 'target', 'mapped_ranges', 'device_sha256']);

const short = (sha256: string | null) => (sha256 ? `${sha256.slice(0, 12)}…` : 'unknown');
const size = (bytes: number | null) => (bytes === null ? 'an unknown number of bytes' : formatBytes(bytes));

function summarize(facts: VerificationFacts & { verified: Verified }): string {
  const { verified_bytes: bytes, verified_ranges: ranges, sha256 } = facts;
  switch (facts.verified) {
    case 'image':
      return `whole image (${size(bytes)}) read back, sha256 ${short(sha256)} verified`;
    case 'target':
      return `whole eMMC over the image's ${size(bytes)} read back: sha256 ${short(sha256)} verified (full byte match)`;
    case 'mapped_ranges':
      return `${size(bytes)} in ${ranges ?? '?'} mapped ranges verified`;
    case 'sent':
      return `whole image (${size(bytes)}) sent; the device reported no result, so nothing was verified`;
    case 'device_sha256':
      return `sha256 ${short(sha256)} verified: what arrived (${size(bytes)}) is what the device read`;
    case 'server_sha256':
      return `received whole (${size(bytes)}), sha256 ${short(sha256)} computed by the server; the device sent no checksum`;
    case 'size_unknown':
      return `received ${size(bytes)}, sha256 ${short(sha256)} computed by the server; the device never gave its eMMC size, so whether this is the whole eMMC is not known`;
  }
}

export function describeVerification(facts: VerificationFacts): VerificationView | null {
  if (facts.verified === null) return null;
  const verified = facts.verified;
  return {
    scope: verified,
    checked: CHECKED.has(verified),
    bytes: facts.verified_bytes,
    ranges: facts.verified_ranges,
    summary: summarize({ ...facts, verified }),
  };
}
