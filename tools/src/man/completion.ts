/**
 * Bash completion for `spark`, made from the same usage lines `spark --help`
 * prints (apps/cli `COMMANDS`): the commands, their subcommands (`config
 * check`, `keytool key-new`…) and each one's options; options that take a
 * path complete file names.
 */

/** One completion target: `command` or `command subcommand`, with its options. */
interface Target {
  words: string[];
  options: Set<string>;
}

/** Option values that are paths: completed with file names. */
const PATH_OPTIONS = new Set(['--config', '--token-file', '--acl-file', '--credentials-dir', '--dir']);

/** Reads the targets from usage blocks (each line that starts two spaces in names a command, then its options). */
export function completionTargets(usages: readonly string[]): Target[] {
  const targets: Target[] = [];
  for (const usage of usages) {
    let current: Target | null = null;
    for (const line of usage.split('\n')) {
      if (/^ {2}\S/.test(line)) {
        const words = /^ {2}([a-z][a-z-]*)(?: ([a-z][a-z-]*)(?= |$))?/.exec(line);
        if (!words?.[1]) continue;
        current = { words: [words[1], ...(words[2] ? [words[2]] : [])], options: new Set() };
        targets.push(current);
      }
      // Options are named on the command's line and its continuation lines (`[--port N] …`), before the description
      // (which follows a gap of two or more spaces, or has a line of its own).
      if (current && (/^ {2}\S/.test(line) || /^ +\[/.test(line))) {
        const usagePart = line.trim().split(/ {2,}/)[0] ?? '';
        for (const option of usagePart.matchAll(/(?<![\w-])(--[a-z][a-z-]*|-[a-z])(?=[\s=\]]|$)/g)) current.options.add(option[1] ?? '');
      }
    }
  }
  return targets;
}

function words(list: Iterable<string>): string {
  return [...list].join(' ');
}

/** The bash completion script for `spark`. */
export function bashCompletion(usages: readonly string[]): string {
  const targets = completionTargets(usages);
  const commands = [...new Set(targets.map((target) => target.words[0] ?? ''))];
  const subcommands = new Map<string, string[]>();
  for (const target of targets) {
    const [command = '', sub] = target.words;
    if (sub) subcommands.set(command, [...(subcommands.get(command) ?? []), sub]);
  }
  const cases = targets.map((target) => {
    const key = target.words.join(' ');
    return `    '${key}') options='${words([...target.options, '--help'])}' ;;`;
  });
  return `# bash completion for spark (spark-ts); made from \`spark --help\` by tools/src/man (npm run man).
_spark() {
  local cur=\${COMP_WORDS[COMP_CWORD]} prev=\${COMP_WORDS[COMP_CWORD-1]} command=\${COMP_WORDS[1]:-} options key
  COMPREPLY=()
  if ((COMP_CWORD == 1)); then
    mapfile -t COMPREPLY < <(compgen -W '${words(commands)} --help --version' -- "$cur")
    return
  fi
  case $prev in
    ${[...PATH_OPTIONS].join('|')})
      mapfile -t COMPREPLY < <(compgen -f -- "$cur")
      return
      ;;
  esac
  case $command in
${[...subcommands]
  .map(
    ([command, subs]) => `    ${command})
      if ((COMP_CWORD == 2)); then
        mapfile -t COMPREPLY < <(compgen -W '${words(subs)}' -- "$cur")
        return
      fi
      key="$command \${COMP_WORDS[2]}"
      ;;`,
  )
  .join('\n')}
    *) key=$command ;;
  esac
  case $key in
${cases.join('\n')}
    *) return ;;
  esac
  mapfile -t COMPREPLY < <(compgen -W "$options" -- "$cur")
}
complete -o default -F _spark spark
`;
}
