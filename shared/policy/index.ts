export * from './config.ts';
export * from './evaluate.ts';
export * from './pattern.ts';
export * from './registry.ts';
