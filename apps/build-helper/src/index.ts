export * from './request.js';
export * from './helper-options.js';
export * from './helper-config.js';
export * from './workspace-paths.js';
export * from './process-tree.js';
export * from './run-helper.js';
