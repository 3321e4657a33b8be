import type { SparkConfig } from '@spark/config';
import { probeLighthouse } from '@spark/lighthouse';
import type { ArchiveInfo } from '@spark/protocol';
import { dputUploadUrl, probeArchive } from '@spark/service';
import { ok, problem, skipped, type CheckResult } from './check-result.js';

/** The name the archive probe asks about: a plain file name, never uploaded. */
const PROBE_FILE = 'spark-verify.probe';

/** Lighthouse answers `archive-info` over CURVE with this worker's keys; resolves with its upload targets when it does. */
export async function checkLighthouse(config: SparkConfig): Promise<{ result: CheckResult; archiveInfo: ArchiveInfo | null }> {
  const check = 'Lighthouse';
  const probe = await probeLighthouse(config);
  if (probe.ok) {
    const repos = Object.keys(probe.archiveInfo.archive_repos);
    return {
      result: ok(
        check,
        `${config.lighthouseServer} accepted the CURVE handshake and answered archive-info in ${Math.round(probe.roundTripMs)} ms (repositories: ${repos.join(', ') || 'none'})`,
      ),
      archiveInfo: probe.archiveInfo,
    };
  }
  return { result: problem(check, probe.kind === 'keys' ? 'config' : 'unavailable', probe.problem), archiveInfo: null };
}

/**
 * Each upload location Lighthouse names answers, over the connection the
 * uploader's PUTs take (CA store, proxy): an `OPTIONS` for a file name in each
 * repository, which uploads nothing. Any answer but 404 and 5xx counts.
 */
export async function checkArchive(config: SparkConfig, archiveInfo: ArchiveInfo | null): Promise<CheckResult[]> {
  if (archiveInfo === null) {
    return [skipped('archive upload', 'not-applicable', "needs Lighthouse's archive-info, which it did not give (see above)")];
  }
  const repos = Object.entries(archiveInfo.archive_repos);
  if (repos.length === 0) return [problem('archive upload', 'unavailable', 'Lighthouse names no repository to upload to')];
  const results: CheckResult[] = [];
  for (const [repo, target] of repos) {
    const check = `archive upload ${repo}`;
    let url: string;
    try {
      url = dputUploadUrl(target, repo, PROBE_FILE);
    } catch (error) {
      results.push(problem(check, 'unavailable', `Lighthouse's upload target is unusable: ${(error as Error).message}`));
      continue;
    }
    const location = url.slice(0, -PROBE_FILE.length);
    try {
      const status = await probeArchive(url, config.uploader.connectTimeoutMs);
      if (status === 404) {
        results.push(
          problem(
            check,
            'unavailable',
            `${location} answered 404: no upload location there; check the repository's upload_fqdn in Laniakea`,
          ),
        );
      } else if (status >= 500) {
        results.push(problem(check, 'unavailable', `${location} answered ${status}: the archive's upload service fails`));
      } else {
        results.push(ok(check, `${location} answers (HTTP ${status})`));
      }
    } catch (error) {
      results.push(problem(check, 'unavailable', `${location}: ${(error as Error).message}`));
    }
  }
  return results;
}
