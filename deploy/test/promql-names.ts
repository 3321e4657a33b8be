/*
 * The metric names a PromQL expression reads, found the way Prometheus's
 * grammar tells them apart (prometheus.io/docs/prometheus/latest/querying/basics):
 * an identifier is a metric name unless it calls a function (`rate(`), is an
 * aggregation operator (`sum by (…) (…)`) or a keyword, or stands in a label
 * matcher `{…}`, a range `[…]`, a label list of by/without/on/ignoring/
 * group_left/group_right, or a string. Grafana's `$variables` are left out.
 */

const AGGREGATIONS = new Set([
  'sum',
  'min',
  'max',
  'avg',
  'group',
  'stddev',
  'stdvar',
  'count',
  'count_values',
  'bottomk',
  'topk',
  'quantile',
  'limitk',
  'limit_ratio',
]);
const KEYWORDS = new Set([
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'and',
  'or',
  'unless',
  'bool',
  'offset',
  'atan2',
]);
const NUMBERS = new Set(['inf', 'nan']);

/** The metric names `expr` reads, each once, in order of appearance. */
export function metricNamesIn(expr: string): string[] {
  const text = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, ' ')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names: string[] = [];
  for (const match of text.matchAll(/(?<![\w.:])[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const name = match[0];
    const next = text.slice(match.index + name.length).trimStart();
    if (next.startsWith('(') || AGGREGATIONS.has(name) || KEYWORDS.has(name) || NUMBERS.has(name.toLowerCase())) continue;
    if (!names.includes(name)) names.push(name);
  }
  return names;
}
