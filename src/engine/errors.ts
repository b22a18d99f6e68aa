/**
 * One error type for everything that goes wrong at the engine's edges. It carries *what* (file, tensor,
 * field) and *why*, so the CLI and the UI's notice component can say exactly what to fix.
 */
export interface ErrorWhere {
  file?: string;
  tensor?: string;
  field?: string;
}

export class PruneLabError extends Error {
  readonly where: ErrorWhere;
  constructor(message: string, where: ErrorWhere = {}) {
    const parts = [where.file && `file ${where.file}`, where.tensor && `tensor ${where.tensor}`, where.field && `field ${where.field}`].filter(Boolean).join(', ');
    super(parts ? `${parts}: ${message}` : message);
    this.name = 'PruneLabError';
    this.where = where;
  }
}

/** Turns anything thrown into a message fit for a person. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
