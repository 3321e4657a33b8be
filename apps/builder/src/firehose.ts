import { versionWithoutEpoch } from '@spark/protocol';
import type { CompilerWarning } from './compiler-warnings.js';

/** The tool named as a Firehose generator, as spark names it `laniakea-spark/debspawn`. */
export const FIREHOSE_GENERATOR = 'spark-ts/debspawn';

/** What a Firehose report says about one build. */
export interface FirehoseReport {
  /** Generator version: debspawn's version string. */
  generatorVersion: string;
  /** The source package built (the system under test). */
  source: string;
  version: string;
  /** Wall-clock time of the build in seconds, or null when it did not run. */
  wallClockSeconds: number | null;
  warnings: readonly CompilerWarning[];
}

/** `<name>_<version-without-epoch>_<arch>.<uuid>.firehose.xml` (spark/runners/debspawn.py). */
export function firehoseFileName(name: string, version: string, arch: string, uuid: string): string {
  return `${name}_${versionWithoutEpoch(version)}_${arch}.${uuid}.firehose.xml`;
}

/**
 * Firehose XML (the format of fedora-static-analysis/firehose, `firehose.rng`):
 * one `<issue>` per compiler warning, the source package as `<debian-source>`
 * (upstream version and Debian revision split as firehose's own model does).
 */
export function firehoseXml(report: FirehoseReport): string {
  const dash = report.version.lastIndexOf('-');
  const upstream = dash === -1 ? report.version : report.version.slice(0, dash);
  const release = dash === -1 ? null : report.version.slice(dash + 1);
  const out: string[] = ["<?xml version='1.0' encoding='UTF-8'?>", '<analysis>', '  <metadata>'];
  out.push(`    <generator name=${attr(FIREHOSE_GENERATOR)} version=${attr(report.generatorVersion)}/>`);
  out.push(
    `    <sut><debian-source name=${attr(report.source)} version=${attr(upstream)}${release === null ? '' : ` release=${attr(release)}`}/></sut>`,
  );
  if (report.wallClockSeconds !== null) {
    out.push(`    <stats wall-clock-time=${attr(report.wallClockSeconds.toFixed(1))}/>`);
  }
  out.push('  </metadata>', '  <results>');
  for (const warning of report.warnings) {
    const testId = warning.option === null ? '' : ` test-id=${attr(warning.option)}`;
    out.push(`    <issue${testId}>`);
    out.push(`      <message>${text(warning.message)}</message>`);
    out.push('      <location>');
    out.push(`        <file given-path=${attr(warning.file)}/>`);
    if (warning.function !== null) out.push(`        <function name=${attr(warning.function)}/>`);
    // firehose.rng requires `column` (its Point.from_xml reads it as an int); firehose's own gcc parser writes 0 when gcc gave none.
    out.push(`        <point line="${warning.line}" column="${warning.column ?? 0}"/>`);
    out.push('      </location>');
    out.push('    </issue>');
  }
  out.push('  </results>', '</analysis>', '');
  return out.join('\n');
}

// XML 1.0 forbids most control characters even escaped; build output may hold any byte.
// eslint-disable-next-line no-control-regex
const NOT_XML = /[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]/g;

function text(value: string): string {
  return value.replace(NOT_XML, '\ufffd').replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function attr(value: string): string {
  return `"${text(value).replace(/"/g, '&quot;')}"`;
}
