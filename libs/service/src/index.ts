export * from './logger.js';
export * from './redis.js';
export * from './shutdown.js';
export * from './queues.js';
export * from './metrics.js';
export * from './file-digests.js';
export * from './job-records.js';
export * from './stage-lifecycle.js';
