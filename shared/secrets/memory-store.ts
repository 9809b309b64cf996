import type { SecretMaterial, SecretPutInput, SecretStore } from '../lease/ports.ts';

/** The local secret store: a Map in the broker's process, standing in for Secrets Manager. */
export class MemorySecretStore implements SecretStore {
  private readonly secrets = new Map<string, SecretMaterial>();

  async put(input: SecretPutInput): Promise<{ name: string }> {
    this.secrets.set(input.name, { ...input.value });
    return { name: input.name };
  }

  async get(name: string): Promise<SecretMaterial | undefined> {
    const value = this.secrets.get(name);
    return value ? { ...value } : undefined;
  }

  async delete(name: string): Promise<void> {
    this.secrets.delete(name);
  }

  async exists(name: string): Promise<boolean> {
    return this.secrets.has(name);
  }

  /** How many secrets are still held: after a clean run, zero. */
  get size(): number {
    return this.secrets.size;
  }
}
