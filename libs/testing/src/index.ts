export * from './redis-server.js';
export * from './source-package.js';
export * from './run-entry.js';
export * from './free-port.js';
export * from './bench-stats.js';
