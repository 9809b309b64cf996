export * from './limits.ts';
export * from './schemas.ts';
export * from './parse.ts';
