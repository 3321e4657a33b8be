export * from './backoff.js';
export * from './curve-keys.js';
export * from './lighthouse-link.js';
export * from './probe-lighthouse.js';
