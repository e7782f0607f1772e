import { Type, type Static } from 'typebox';
import { WholeNumber } from '../http/whole-number.js';

export const JobParams = Type.Object({ job: WholeNumber({ minimum: 1 }) });

export const TokenQuery = Type.Object({
  token: Type.Optional(Type.String({ maxLength: 200, description: "the job's token, from its URLs" })),
  mac: Type.Optional(Type.String({ maxLength: 64 })),
});

export const ProgressBody = Type.Object(
  {
    bytes_done: WholeNumber({ description: 'bytes written, read or verified so far in this phase' }),
    phase: Type.Optional(Type.String({ maxLength: 40, description: 'e.g. writing, verifying, uploading' })),
    bytes_written: Type.Optional(WholeNumber()),
    bytes_verified: Type.Optional(WholeNumber()),
    rate: Type.Optional(WholeNumber({ description: "the device's current rate, bytes per second" })),
    discarded: Type.Optional(Type.Integer({ minimum: 0, maximum: 1, description: '1: the target was discarded (or zeroed) first' })),
    mac: Type.Optional(Type.String({ maxLength: 64 })),
    problem: Type.Optional(Type.String({ maxLength: 500, description: 'an attempt failed and another follows: why (shown on the job)' })),
  },
  { additionalProperties: true },
);
export type ProgressBody = Static<typeof ProgressBody>;

export const ResultBody = Type.Object(
  {
    status: Type.Union([Type.Literal('ok'), Type.Literal('failed')]),
    sha256: Type.Optional(Type.String({ pattern: '^[0-9a-fA-F]{64}$', description: 'hash of what the device wrote (read back) or read' })),
    ranges_sha256: Type.Optional(
      Type.String({ pattern: '^[0-9a-fA-F]{64}$', description: 'sparse deploy: sha256 over the read-back chunk hashes, one hex line each' }),
    ),
    bytes: Type.Optional(WholeNumber()),
    error: Type.Optional(Type.String({ maxLength: 2000 })),
    mac: Type.Optional(Type.String({ maxLength: 64 })),
  },
  { additionalProperties: true },
);
export type ResultBody = Static<typeof ResultBody>;
