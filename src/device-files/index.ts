/** Per-device files (profiles, the device table, files rendered per deploy): what other modules may use. */
export { createDeviceFilesService, type DeviceFilesService } from './service.js';
export type { JobFileView } from './job-report.js';
export { createDeviceFilesStore, type DeviceFilesStore } from './store.js';
export { deviceFilesAdminRoutes, deviceFilesRoutes } from './routes.js';
export { VARIABLES } from './template.js';
