/**
 * Templates of per-device files: `{{name}}` is replaced by a variable's value. The names are
 * fixed (VARIABLES) plus `table.COLUMN`, a column of the imported device table. A name that is
 * not one of them is refused when the profile is saved; a value the device does not have is
 * refused when a deploy is ordered, before anything is queued or written.
 */

/** The variables a template may name, besides `table.COLUMN`. */
export const VARIABLES = [
  'serial',
  'mac',
  'mac_plain',
  'mac_dash',
  'model',
  'emmc_cid',
  'job_id',
  'image',
  'sequence',
  'rule_sequence',
  'date',
  'time',
  'first_boot_token',
  'first_boot_url',
] as const;
export type VariableName = (typeof VARIABLES)[number];

/** `{{ name }}`: letters, digits, `_`, and one `table.` prefix. */
const PLACEHOLDER = /\{\{\s*([A-Za-z0-9_.]*)\s*\}\}/g;
export const TABLE_COLUMN = /^[A-Za-z0-9_]+$/;

/** The names a template uses, in order of first use. */
export function namesIn(template: string): string[] {
  const names = new Set<string>();
  for (const match of template.matchAll(PLACEHOLDER)) names.add(match[1]!);
  return [...names];
}

/** Why a name is not a variable, or null when it is one. */
export function unknownName(name: string): string | null {
  if (name.startsWith('table.')) {
    return TABLE_COLUMN.test(name.slice(6)) ? null : `{{${name}}} is not a device table column name (letters, digits and _)`;
  }
  if ((VARIABLES as readonly string[]).includes(name)) return null;
  return `{{${name}}} is not a variable; use ${VARIABLES.map((variable) => `{{${variable}}}`).join(', ')} or {{table.COLUMN}}`;
}

/**
 * Looks a variable up for one device: its value, or the reason the device has none (the end of
 * a sentence: "… needs {{serial}}, but " + reason).
 */
export type Lookup = (name: string) => { value: string } | { missing: string };

/** The rendered text, or the first variable the device lacks and why. */
export function render(template: string, lookup: Lookup): { text: string } | { name: string; missing: string } {
  for (const name of namesIn(template)) {
    const found = lookup(name);
    if ('missing' in found) return { name, missing: found.missing };
  }
  return {
    text: template.replace(PLACEHOLDER, (_whole, name: string) => (lookup(name) as { value: string }).value),
  };
}
