// Entry of an IMAP worker process (src/imap/workers.ts forks it): TypeScript through tsx, as in
// bin/postern.js, whatever flags the main process was started with.
process.env.UV_THREADPOOL_SIZE ??= '16';
const { register } = await import('tsx/esm/api');
register();
await import('./worker.ts');
