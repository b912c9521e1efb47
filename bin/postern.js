#!/usr/bin/env node
// Entry point of the `postern` command. More libuv threads: blob fsyncs run there.
process.env.UV_THREADPOOL_SIZE ??= '16';
const { register } = await import('tsx/esm/api');
register();
const { buildProgram } = await import('../src/cli/main.ts');
const { fail } = await import('../src/cli/io.ts');
buildProgram().parseAsync(process.argv).catch(fail);
