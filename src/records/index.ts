/** Device records: one per device (by serial, else MAC), with its eMMC identity, jobs and backups. */
export { recordsToCsv } from './csv.js';
export { decodeEmmcCid, normalizeEmmcCid, type EmmcIdentity } from './emmc-cid.js';
export { recordAdminRoutes } from './routes.js';
export { createRecordService, type RecordService } from './service.js';
export { createRecordStore } from './store.js';
export type { DeviceRecord, RecordBackup, RecordJob } from './view.js';
