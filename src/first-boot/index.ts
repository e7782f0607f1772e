/** First-boot confirmation (issue 13): what other modules may use. The hook script lives in hook/. */
export { createFirstBootService, DEFAULT_CONFIRM_TIMEOUT_S, FIRST_BOOT_PATH, type FirstBootService } from './service.js';
export { createFirstBootStore } from './store.js';
export { firstBootRoutes } from './routes.js';
export { firstBootView, type FirstBootView } from './view.js';
