/** Webhooks and labels: what the rest of the server may use. */
export { createNotifyService, type NotifyService } from './service.js';
export { notifyAdminRoutes } from './routes.js';
export { JOB_EVENTS, type JobChange } from './events.js';
export { LABEL_VARIABLES } from './label-template.js';
export type { DeliveryView, WebhookView } from './views.js';
export type { LabelSettingsView } from './labels.js';
