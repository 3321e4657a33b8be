export * from './debian-names.js';
export * from './lighthouse.js';
export * from './queues.js';
export * from './deb822.js';
export * from './redis-keys.js';
export * from './job-ids.js';
export * from './builder-control.js';
export * from './upload-state.js';
