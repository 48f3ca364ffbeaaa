// ESLint as a test, so that `npm test` covers lint (eslint.config.mjs). The
// C++/CUDA formatting check stays in `npm run lint` only.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

const root = path.resolve(__dirname, '..');
const eslintBin = path.join(path.dirname(require.resolve('eslint/package.json')), 'bin', 'eslint.js');

interface LintMessage {
  ruleId: string | null;
  line: number;
  message: string;
}
interface LintResult {
  filePath: string;
  messages: LintMessage[];
}

function eslint(args: string[], input?: string): LintResult[] {
  const r = spawnSync(process.execPath, [eslintBin, '--format', 'json', ...args], {
    cwd: root,
    encoding: 'utf8',
    input,
    maxBuffer: 64 * 1024 * 1024,
  });
  // 0: clean, 1: problems found; anything else is a crash or a config error.
  if (r.status !== 0 && r.status !== 1) throw new Error(`eslint exited with ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout) as LintResult[];
}

const problems = (results: LintResult[]): string[] =>
  results.flatMap((f) =>
    f.messages.map((m) => `${path.relative(root, f.filePath)}:${m.line} ${m.ruleId ?? 'fatal'}: ${m.message}`),
  );

describe('eslint', () => {
  test('lib/, bench/ and test/ have no lint problems', () => {
    const results = eslint(['lib', 'bench', 'test']);
    // Every TypeScript file of the three folders was linted (no silent ignore).
    const linted = new Set(results.map((f) => path.relative(root, f.filePath)));
    for (const dir of ['lib', 'bench', 'test']) {
      const walk = (d: string): string[] =>
        fs.readdirSync(path.join(root, d), { withFileTypes: true }).flatMap((e) =>
          e.isDirectory() ? walk(path.join(d, e.name)) : e.name.endsWith('.ts') ? [path.join(d, e.name)] : [],
        );
      for (const file of walk(dir)) expect(linted).toContain(file);
    }
    expect(problems(results)).toEqual([]);
  });

  test('the type-aware rules are on (a floating promise is reported)', () => {
    const code = 'async function f(): Promise<number> {\n  return 1;\n}\nexport function g(): void {\n  f();\n}\n';
    // Linted as if it were this file's text, so the project's type information applies.
    const results = eslint(['--stdin', '--stdin-filename', path.join('test', 'lint.test.ts')], code);
    expect(problems(results)).toEqual([expect.stringMatching(/:5 @typescript-eslint\/no-floating-promises: /)]);
  });
});
