export { runSparkCli, type CliIo } from './cli/spark-cli.js';
export * from './supervisor/supervisor.js';
export {
  startUploadReceiver,
  type FileFailure,
  type ReceivedRequest,
  type UploadReceiver,
  type UploadReceiverOptions,
} from './upload-receiver/upload-receiver.js';
