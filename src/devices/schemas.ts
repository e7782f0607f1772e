import { Type, type Static } from 'typebox';
import { DEFAULT_PAGE_SIZE, DEVICE_STATES, MAX_PAGE_SIZE } from './list-query.js';
import { WholeNumber } from '../http/whole-number.js';

export const Mac = Type.String({ description: 'MAC address; dashes, dots, colons or bare hex, any case', maxLength: 64 });

export const RegisterBody = Type.Object(
  {
    mac: Mac,
    ip: Type.Optional(Type.String({ maxLength: 64, description: 'the device address; defaults to the request source' })),
    serial: Type.Optional(Type.String({ maxLength: 64 })),
    model: Type.Optional(Type.String({ maxLength: 200 })),
    storage_bytes: Type.Optional(WholeNumber({ description: 'size of the target device (eMMC) in bytes' })),
    client_version: Type.Optional(Type.String({ maxLength: 64 })),
    emmc_cid: Type.Optional(Type.String({ maxLength: 64, description: "the eMMC's CID register: 32 hex digits (/sys/block/mmcblk0/device/cid)" })),
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
    WholeNumber({ maximum: MAX_POLL_WAIT_SECONDS, description: 'long-poll: seconds to wait for an action' }),
  ),
  features: Type.Optional(
    Type.String({ maxLength: 200, description: "what the client can do, comma-separated: 'sparse' (write chunks at offsets), 'zstd'" }),
  ),
});
export type PollQuery = Static<typeof PollQuery>;

/** A page of the device list: `GET /api/devices`, the Devices page and its live stream. */
export const DeviceListQuery = Type.Object({
  search: Type.Optional(Type.String({ maxLength: 200, description: 'part of a MAC (any separators or case), an IP, a serial or a model' })),
  // '' is "any": what a form's empty choice sends.
  state: Type.Optional(
    Type.Union([...DEVICE_STATES, ''].map((state) => Type.Literal(state)), {
      description: "'active': a job queued or running; 'stale': not heard from for 90 s; 'netbooting': seen only at boot; 'ready': waiting for work",
    }),
  ),
  order: Type.Optional(Type.Union([Type.Literal('oldest'), Type.Literal('newest'), Type.Literal('')], { description: 'by first seen; default oldest first' })),
  cursor: Type.Optional(Type.String({ maxLength: 64, description: "the 'next' of the page before" })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_PAGE_SIZE, description: `default ${DEFAULT_PAGE_SIZE}` })),
});
export type DeviceListQuery = Static<typeof DeviceListQuery>;
