import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { createMetrics } from '@spark/service';
import { metricNamesIn } from './promql-names.js';

const monitoringDir = fileURLToPath(new URL('../monitoring/', import.meta.url));
const SERVICES = ['connector', 'builder', 'signer', 'uploader'] as const;
/**
 * The series Prometheus itself adds to every scrape target: `up` is 1 when the
 * scrape worked (prometheus.io/docs/concepts/jobs_instances, "Automatically
 * generated labels and time series"). The alert rules use it to see a service
 * that no longer answers; every other name must be one a service exports.
 */
const PER_TARGET_SERIES = ['up'];

/**
 * Every series name the services export, from the metric set they create
 * (createMetrics): a histogram's `_bucket`, `_sum` and `_count`, a summary's
 * `_sum` and `_count` besides its own name.
 */
async function exportedNames(): Promise<Set<string>> {
  const names = new Set<string>();
  for (const service of SERVICES) {
    for (const metric of await createMetrics(service, { version: 'test' }).registry.getMetricsAsJSON()) {
      const type = String(metric.type);
      if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(`${metric.name}${suffix}`);
      else if (type === 'summary') for (const name of [metric.name, `${metric.name}_sum`, `${metric.name}_count`]) names.add(name);
      else names.add(metric.name);
    }
  }
  return names;
}

/** Each expression whose metric names are not exported, with those names. */
function unknownNames(exprs: readonly string[], exported: Set<string>): { expr: string; unknown: string[] }[] {
  return exprs
    .map((expr) => ({ expr, unknown: metricNamesIn(expr).filter((name) => !exported.has(name) && !PER_TARGET_SERIES.includes(name)) }))
    .filter(({ unknown }) => unknown.length > 0);
}

interface AlertRule {
  alert?: unknown;
  expr?: unknown;
  for?: unknown;
  labels?: Record<string, unknown>;
  annotations?: Record<string, unknown>;
}

/** Every `expr` string anywhere in a Grafana dashboard (panels, rows' panels, targets). */
function dashboardExprs(node: unknown): string[] {
  if (Array.isArray(node)) return node.flatMap(dashboardExprs);
  if (typeof node !== 'object' || node === null) return [];
  return Object.entries(node).flatMap(([key, value]) => (key === 'expr' && typeof value === 'string' ? [value] : dashboardExprs(value)));
}

describe('monitoring (deploy/monitoring)', () => {
  it('tells the metric names of an expression from functions, aggregations, labels, ranges and variables', () => {
    assert.deepEqual(
      metricNamesIn(
        'sum by (instance, le) (rate(spark_a_bucket{result=~"failed|x", q="{b}"}[5m])) / on(instance) group_left(stage) spark_b > 0.9 and time() - max(spark_c offset 1h) > 1e3 or vector(0) unless up{job="$job"} * $__rate_interval',
      ),
      ['spark_a_bucket', 'spark_b', 'spark_c', 'up'],
    );
    assert.deepEqual(metricNamesIn('histogram_quantile(0.95, sum without (accepting) (spark_d[${window}])) bool == Inf'), ['spark_d']);
  });

  it('knows what the services export, and finds a name none of them does', async () => {
    const exported = await exportedNames();
    for (const name of [
      'spark_build_info',
      'spark_lighthouse_link_up',
      'spark_lighthouse_last_contact_seconds',
      'spark_builders_alive',
      'spark_queue_jobs',
      'spark_jobs_total',
      'spark_stage_duration_seconds_bucket',
      'spark_process_resident_memory_bytes',
    ]) {
      assert.ok(exported.has(name), `${name} is not among the exported names: ${[...exported].join(' ')}`);
    }
    assert.deepEqual(unknownNames(['rate(spark_jobs_total[5m]) > 0 and spark_lighthouse_link_up', 'spark_build_infos == 1'], exported), [
      { expr: 'spark_build_infos == 1', unknown: ['spark_build_infos'] },
    ]);
  });

  it('the alert rules name only metrics a service exports, and each alert says how bad and what to do', async () => {
    const file = YAML.parse(await readFile(`${monitoringDir}spark-alerts.yml`, 'utf8')) as {
      groups?: { name?: unknown; rules?: AlertRule[] }[];
    };
    const rules = (file.groups ?? []).flatMap((group) => group.rules ?? []);
    assert.ok(rules.length > 0, 'no rules in spark-alerts.yml');
    const exprs: string[] = [];
    for (const rule of rules) {
      assert.equal(typeof rule.alert, 'string', `a rule without an alert name: ${JSON.stringify(rule)}`);
      assert.equal(typeof rule.expr, 'string', `${String(rule.alert)}: no expr`);
      exprs.push(rule.expr as string);
      assert.ok(metricNamesIn(rule.expr as string).length > 0, `${String(rule.alert)} reads no metric: ${String(rule.expr)}`);
      if (rule.for !== undefined) assert.ok(typeof rule.for === 'string' && /^\d+[smhd]$/.test(rule.for), `${String(rule.alert)}: for`);
      assert.ok(['critical', 'warning', 'info'].includes(String(rule.labels?.['severity'])), `${String(rule.alert)}: severity`);
      for (const key of ['summary', 'description']) {
        const text = rule.annotations?.[key];
        assert.ok(typeof text === 'string' && text.trim().length > 0, `${String(rule.alert)}: no ${key}`);
      }
    }
    assert.deepEqual(unknownNames(exprs, await exportedNames()), []);
    const alerts = rules.map((rule) => String(rule.alert));
    assert.equal(new Set(alerts).size, alerts.length, `an alert name twice: ${alerts.join(', ')}`);
  });

  it('the Grafana dashboard names only metrics a service exports, in panels that fit its 24-column grid', async () => {
    const dashboard = JSON.parse(await readFile(`${monitoringDir}spark-dashboard.json`, 'utf8')) as {
      uid?: unknown;
      title?: unknown;
      panels?: {
        id?: unknown;
        title?: unknown;
        gridPos?: { x: number; y: number; w: number; h: number };
        targets?: { refId?: unknown; expr?: unknown }[];
      }[];
      templating?: { list?: { name?: unknown; type?: unknown }[] };
    };
    assert.equal(typeof dashboard.uid, 'string');
    assert.equal(typeof dashboard.title, 'string');
    const panels = dashboard.panels ?? [];
    assert.ok(panels.length > 0, 'no panels');
    const ids = panels.map((panel) => panel.id);
    assert.equal(new Set(ids).size, ids.length, `panel ids not unique: ${ids.join(', ')}`);
    for (const panel of panels) {
      const where = `panel ${String(panel.title)}`;
      assert.ok(
        panel.gridPos && panel.gridPos.x >= 0 && panel.gridPos.w > 0 && panel.gridPos.x + panel.gridPos.w <= 24,
        `${where}: gridPos`,
      );
      assert.ok((panel.targets ?? []).length > 0, `${where}: no query`);
      for (const target of panel.targets ?? []) {
        assert.equal(typeof target.refId, 'string', `${where}: a target without refId`);
        assert.ok(typeof target.expr === 'string' && metricNamesIn(target.expr).length > 0, `${where}: a target reads no metric`);
      }
    }
    // Panels query the data source the importer picks.
    assert.ok(dashboard.templating?.list?.some((variable) => variable.name === 'datasource' && variable.type === 'datasource'));
    assert.deepEqual(unknownNames(dashboardExprs(dashboard), await exportedNames()), []);
  });

  it('the example scrape config has a job for each service, named as the rules select up by', async () => {
    const config = YAML.parse(await readFile(`${monitoringDir}prometheus-scrape.yml`, 'utf8')) as {
      scrape_configs?: { job_name?: unknown }[];
    };
    const jobs = (config.scrape_configs ?? []).map((job) => String(job.job_name));
    assert.deepEqual(jobs.sort(), SERVICES.map((service) => `spark-${service}`).sort());
    const rules = await readFile(`${monitoringDir}spark-alerts.yml`, 'utf8');
    assert.match(rules, /up\{job=~"spark-\(connector\|builder\|signer\|uploader\)"\}/);
  });
});
