/**
 * Shell-friendly replies for busybox clients, which have no JSON parser: one `KEY='value'`
 * line per field. Single-quoted so the text is also safe to `.` (source) in sh; the client
 * parses it line by line instead, without eval.
 */
export function toEnvLines(fields: Record<string, string | number | boolean | null | undefined>): string {
  return Object.entries(fields)
    .filter(([, value]) => value !== undefined && value !== null)
    .map(([key, value]) => `${key.toUpperCase()}='${String(value).replace(/[\r\n]+/g, ' ').replaceAll("'", `'\\''`)}'`)
    .join('\n')
    .concat('\n');
}
