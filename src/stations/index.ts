export { relayStationEvents, singleStationEvents, RELAYED_EVENTS, type StationEvents } from './relay.js';
export { stationAdminRoutes } from './routes.js';
export { createStationService, STATION_DOWN_AFTER_MS, type StationService, type StationsView } from './service.js';
export { createStationStore, type StationRow, type StationStore } from './store.js';
export { createStationClient, type Peer, type StationClient } from './client.js';
export { createCopyFetcher, type CopyFetcher } from './copy-fetcher.js';
export { createCopyServing, type CopyServing } from './copy-serving.js';
export { stationPeerRoutes } from './peer-routes.js';
export { requireStation, stationSecret, STATION_SECRET_HEADER } from './secret.js';
