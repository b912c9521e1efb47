#!/usr/bin/env node
// sendmail(1)-compatible submission to the running Postern server (see --help).
const { register } = await import('tsx/esm/api');
register();
const { sendmailMain } = await import('../src/cli/send.ts');
process.exitCode = await sendmailMain(process.argv.slice(2));
