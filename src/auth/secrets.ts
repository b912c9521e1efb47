import { hashPassword } from './password.ts';
import { deriveScram, formatScram } from './scram.ts';

/** What is stored for a new password: the argon2id hash (PLAIN/LOGIN) and the SCRAM-SHA-256 secret. */
export async function passwordSecrets(password: string): Promise<{ hash: string; scram: string }> {
  const [hash, scram] = await Promise.all([hashPassword(password), deriveScram(password)]);
  return { hash, scram: formatScram(scram) };
}
