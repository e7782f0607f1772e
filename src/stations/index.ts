export { relayStationEvents, singleStationEvents, RELAYED_EVENTS, type StationEvents } from './relay.js';
export { stationAdminRoutes } from './routes.js';
export { createStationService, STATION_DOWN_AFTER_MS, type StationService, type StationsView } from './service.js';
export { createStationStore, type StationRow, type StationStore } from './store.js';
