/** `task-started` / `taskStarted` → `TaskStarted`: construct ids (and so logical ids) follow it. */
export function pascal(name: string): string {
  return name.replace(/(^|[-_])([a-z])/g, (_, __, c: string) => c.toUpperCase()).replace(/^[a-z]/, (c) => c.toUpperCase());
}
