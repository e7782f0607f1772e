import { Type, type Static } from 'typebox';

export const Mac = Type.String({ description: 'MAC address; dashes, dots, colons or bare hex, any case', maxLength: 64 });

export const RegisterBody = Type.Object(
  {
    mac: Mac,
    ip: Type.Optional(Type.String({ maxLength: 64, description: 'the device address; defaults to the request source' })),
    serial: Type.Optional(Type.String({ maxLength: 64 })),
    model: Type.Optional(Type.String({ maxLength: 200 })),
    storage_bytes: Type.Optional(Type.Integer({ minimum: 0, description: 'size of the target device (eMMC) in bytes' })),
    client_version: Type.Optional(Type.String({ maxLength: 64 })),
  },
  { additionalProperties: true },
);
export type RegisterBody = Static<typeof RegisterBody>;

export const ReplyFormat = Type.Optional(
  Type.Union([Type.Literal('json'), Type.Literal('env')], { description: "'env' gives KEY='value' lines for sh clients" }),
);

export const RegisterQuery = Type.Object({ format: ReplyFormat });

export const MAX_POLL_WAIT_SECONDS = 300;

export const PollQuery = Type.Object({
  mac: Mac,
  format: ReplyFormat,
  wait: Type.Optional(
    Type.Integer({ minimum: 0, maximum: MAX_POLL_WAIT_SECONDS, description: 'long-poll: seconds to wait for an action' }),
  ),
  features: Type.Optional(
    Type.String({ maxLength: 200, description: "what the client can do, comma-separated: 'sparse' (write chunks at offsets), 'zstd'" }),
  ),
});
export type PollQuery = Static<typeof PollQuery>;
