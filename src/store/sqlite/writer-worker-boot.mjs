// Worker entry in plain JS: a worker thread does not inherit the parent's tsx
// loader, so register it here before loading the TypeScript worker body.
const { register } = await import('tsx/esm/api');
register();
await import('./writer-worker.ts');
