declare module 'libqp' {
  export function decode(input: string): Buffer;
  export function encode(input: Buffer | string): string;
  const _default: { decode: typeof decode; encode: typeof encode };
  export default _default;
}
