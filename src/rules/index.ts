/** Zero-touch rules and the Pause line switch: what other modules may use. */
export { createLineSwitch, type LineSwitch, type LineState } from './line.js';
export { createRuleEngine, type RuleEngine, type RuleVerdict } from './engine.js';
export { createRuleService, type RuleService, type RuleView } from './service.js';
export { createRuleStore, type RuleStore } from './store.js';
export { ruleAdminRoutes } from './routes.js';
