const PROBE_ORIGIN = 'http://local.invalid';

/**
 * `next` as a path on this site to redirect to, or '/' when it could lead anywhere else (an
 * open redirect). Browsers read `\` as `/` and drop tabs and newlines from URLs (WHATWG URL
 * §4.4), so `/\evil.example` and `/\t/evil` would become `//evil…`, another host: refused, as
 * are `//host`, schemes and control characters. The result is the parsed path, query and
 * fragment, percent-encoded, so it is also always a valid Location header.
 */
export function localPath(next: string | undefined): string {
  if (!next || next[0] !== '/' || next[1] === '/' || /[\\\u0000-\u001f\u007f]/.test(next)) return '/';
  let url: URL;
  try {
    url = new URL(next, PROBE_ORIGIN);
  } catch {
    return '/';
  }
  if (url.origin !== PROBE_ORIGIN) return '/';
  return `${url.pathname}${url.search}${url.hash}`;
}
