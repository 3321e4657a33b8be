import type { WorkerAccounts } from '../src/verify/host-accounts.js';

/** Every worker account as root: the tests run as root and own every file they write. */
export const ROOT_ACCOUNTS: WorkerAccounts = {
  connector: 'root',
  builder: 'root',
  signer: 'root',
  uploader: 'root',
  root: 'root',
  sharedGroup: 'root',
  operatorsGroup: 'root',
};
