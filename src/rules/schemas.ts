import { FIRST_BOOT_HOOKS } from '../first-boot/hook-files.js';
import { Type, type Static } from 'typebox';
import { WholeNumber } from '../http/whole-number.js';
import { Mac } from '../devices/schemas.js';

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(schema: T) => Type.Optional(Type.Union([schema, Type.Null()]));

/** The fields of a rule as the API takes them; in a PATCH every one is optional and null clears a match. */
const fields = {
  name: Type.String({ minLength: 1, maxLength: 64, description: 'unique name, shown in history' }),
  enabled: Type.Optional(Type.Boolean({ description: 'default true' })),
  mac: Nullable(Type.String({ maxLength: 17, description: "MAC prefix ('dc:a6:32') or glob ('dc:a6:32:0?:*')" })),
  serial: Nullable(Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { maxItems: 1000, description: 'serial globs; any may match' })),
  model: Nullable(Type.String({ minLength: 1, maxLength: 200, description: "text the model contains, e.g. 'Compute Module 4'" })),
  emmc_min_bytes: Nullable(WholeNumber()),
  emmc_max_bytes: Nullable(WholeNumber()),
  holds_image: Nullable(Type.Boolean({ description: "true/false: the device does/does not already hold a verified deploy of the rule's image" })),
  action: Type.Union([Type.Literal('deploy'), Type.Literal('backup_deploy'), Type.Literal('backup'), Type.Literal('hold')]),
  image: Nullable(Type.String({ minLength: 1, maxLength: 128, description: 'image name; the default image when absent' })),
  after: Nullable(Type.Union([Type.Literal('emmc'), Type.Literal('netboot')], { description: "what the device boots after an ok job; the server's default when absent" })),
  full_match: Type.Optional(Type.Boolean()),
  finish: Nullable(Type.Union([Type.Literal('reboot'), Type.Literal('poweroff'), Type.Literal('wait')], { description: 'what the device does after an ok job: reboot (default), poweroff, or wait with its LED steady on' })),
  profile: Nullable(Type.String({ minLength: 1, maxLength: 64, description: 'profile of per-device files its deploys write' })),
  limit: Nullable(Type.Integer({ minimum: 1, maximum: 1_000_000, description: 'at most this many devices' })),
  retries: Type.Optional(Type.Integer({ minimum: 0, maximum: 100, description: 'a failed job is ordered again this many times, then the device is held' })),
  confirm_boot: Type.Optional(Type.Boolean({ description: 'its deploys wait for the installed OS to call back on first boot; a device counts as provisioned only then (default true)' })),
  confirm_timeout: Nullable(Type.Integer({ minimum: 30, maximum: 86_400, description: 'seconds the first boot is awaited after an ok deploy (default 600)' })),
  first_boot_hook: Nullable(Type.Union(FIRST_BOOT_HOOKS.map((hook) => Type.Literal(hook)), { description: "the hook its confirming deploys write into the image: cmdline (boot partition at /boot/firmware; the default), cmdline-boot (at /boot), none (the profile's files carry {{first_boot_token}})" })),
  provision_again: Type.Optional(Type.Boolean({ description: 'act again each time a device it provisioned registers again' })),
};

export const RuleBody = Type.Object(fields, { additionalProperties: false });
export type RuleBody = Static<typeof RuleBody>;

export const RulePatch = Type.Partial(Type.Object(fields), { additionalProperties: false });
export type RulePatch = Static<typeof RulePatch>;

export const RuleParams = Type.Object({ id: Type.Integer({ minimum: 1 }) });
export const MoveBody = Type.Object({ position: Type.Integer({ minimum: 1, description: '1 is tried first' }) }, { additionalProperties: false });
export const TestQuery = Type.Object({ mac: Mac });
export const ReleaseBody = Type.Object({ mac: Mac }, { additionalProperties: false });
