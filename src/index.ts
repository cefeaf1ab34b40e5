// Public entry points for embedding fairway and for tests.

export { validateConfig, ConfigError, CONFIG_KEYS, type Config } from './config/schema.js';
export { loadConfigFile, readConfigFile } from './config/load.js';
export { parseDuration, parseSize } from './config/units.js';
export { startFairway, StartupError, type Fairway, type StartOptions } from './primary/fairway.js';
export { StateTable, BACKEND_UP, BACKEND_DOWN, BACKEND_DRAINING } from './core/state/stateTable.js';
export { PICKERS } from './core/balancers/registry.js';
export { NO_BACKEND, ALL_FULL, type Picker, type PickerContext } from './core/balancers/picker.js';
export { createLogger } from './log.js';
