import { deliver, startPop3TestServer } from './helpers/pop3-client.ts';
import { message } from './helpers/server.ts';
const t = await startPop3TestServer({ log: { level: 'info' } }, { users: ['alice@example.test', 'bob@example.test'] });
await deliver(t, 'bob@example.test', message('b1', 'From the start\r\n'));
console.log(JSON.stringify({ pop3s: t.pop3sPort, pop3: t.pop3Port, dir: t.dir }));
setInterval(() => {}, 1000);
