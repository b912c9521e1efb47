/** Shared by the benchmarks: --help handling and numeric options with a clear error. */
export function helpAndNumbers(help: string, wantsHelp: boolean | undefined) {
  if (wantsHelp) {
    console.log(help);
    process.exit(0);
  }
  const check = (name: string, v: string, min: number, integer: boolean): number => {
    const n = Number(v);
    if (!(integer ? Number.isInteger(n) : Number.isFinite(n)) || n < min) {
      console.error(`--${name} must be ${integer ? 'an integer' : 'a number'} >= ${min}, got "${v}"\n\n${help}`);
      process.exit(1);
    }
    return n;
  };
  return {
    int: (name: string, v: string, min: number) => check(name, v, min, true),
    num: (name: string, v: string, min: number) => check(name, v, min, false),
  };
}
