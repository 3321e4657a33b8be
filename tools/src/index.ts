export { runSparkCli, type CliIo } from './cli/spark-cli.js';
export {
  startUploadReceiver,
  type FileFailure,
  type ReceivedRequest,
  type UploadReceiver,
  type UploadReceiverOptions,
} from './upload-receiver/upload-receiver.js';
export * from './supervisor/supervisor.js';
export {
  startLighthouseStandIn,
  type LighthouseStandIn,
  type StandInOptions,
  type RecordedRequest,
} from './lighthouse-standin/lighthouse-stand-in.js';
export { JobBoard, loadJobsFile, type StandInJob, type StandInJobStatus, type BoardEntry } from './lighthouse-standin/job-board.js';
export { startZapHandler, loadTrustedKeys, ZAP_ENDPOINT, type ZapHandler } from './lighthouse-standin/zap-handler.js';
export { createKeyFiles, type KeyOwner, type NewKeyFiles } from './keytool/key-new.js';
export { installServerKey, installWorkerKey, readKeyFile } from './keytool/install-key.js';
export { runKeytool, KEYTOOL_USAGE } from './keytool/keytool-cli.js';
