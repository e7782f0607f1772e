import { Type, type Static } from 'typebox';
import { WholeNumber } from '../http/whole-number.js';

export const ProfileFileBody = Type.Object(
  {
    partition: Type.Integer({ minimum: 1, maximum: 4, description: 'MBR primary partition number' }),
    fs: Type.Union([Type.Literal('vfat'), Type.Literal('ext4')]),
    path: Type.String({ minLength: 2, maxLength: 255, description: 'absolute path in the partition, no spaces: /user-data' }),
    mode: Type.Optional(Type.String({ maxLength: 4, description: 'octal permission bits (ext4), default 0644' })),
    append: Type.Optional(
      Type.Boolean({ description: "append to the image's existing file (cmdline.txt: to its first line, after one space) instead of replacing it; default false" }),
    ),
    template: Type.String({ maxLength: 256 * 1024, description: 'the content, with {{variables}}' }),
  },
  { additionalProperties: false },
);

export const ProfileBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 64 }),
    files: Type.Array(ProfileFileBody, { maxItems: 64 }),
  },
  { additionalProperties: false },
);
export type ProfileBody = Static<typeof ProfileBody>;

export const ProfileParams = Type.Object({ name: Type.String({ minLength: 1, maxLength: 64 }) });

/** The device table as JSON (the CLI), or as the raw CSV body (text/csv). */
export const TableBody = Type.Union([Type.Object({ csv: Type.String({ maxLength: 1024 * 1024 }) }, { additionalProperties: false }), Type.String()]);

export const FileParams = Type.Object({ job: WholeNumber({ minimum: 1 }), idx: WholeNumber({ maximum: 1000 }) });
