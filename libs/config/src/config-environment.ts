import { defaultArchitectures, readHostname } from './machine.js';

/** Machine facts the defaults come from; tests replace them. */
export interface ConfigEnvironment {
  hostname: () => string;
  architectures: () => string[];
  /** systemd's `$LOGS_DIRECTORY` (set by `LogsDirectory=`), where the signer's audit log goes by default. */
  logsDirectory?: () => string | undefined;
}

/** The machine facts of this host and process: its host name, its architecture, `$LOGS_DIRECTORY`. */
export const systemEnvironment: ConfigEnvironment = {
  hostname: () => readHostname(),
  architectures: () => defaultArchitectures(),
  logsDirectory: () => process.env['LOGS_DIRECTORY']?.split(':')[0] || undefined,
};
