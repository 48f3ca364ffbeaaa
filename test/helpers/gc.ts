// A full garbage collection from inside a test (jest runs without --expose-gc),
// followed by the turns of the event loop in which N-API finalizers run.
import * as v8 from 'v8';
import * as vm from 'vm';

let gc: (() => void) | null = null;

export async function collectGarbage(): Promise<void> {
  if (gc === null) {
    v8.setFlagsFromString('--expose-gc');
    gc = vm.runInNewContext('gc') as () => void;
  }
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
}
