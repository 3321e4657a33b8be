export * from './curve-keyfile.js';
export * from './key-new.js';
export * from './install-key.js';
