import { normalizeMac } from '../shared/mac.js';
import { AppError } from '../shared/errors.js';
import { CliError, EXIT } from './errors.js';

/**
 * A MAC argument or option, checked with the server's own normaliser before anything is sent,
 * so the CLI accepts exactly the spellings the server does. For commander's argument parser.
 */
export function macArgument(input: string): string {
  try {
    return normalizeMac(input);
  } catch (error) {
    if (error instanceof AppError) throw new CliError(error.message, EXIT.usage);
    throw error;
  }
}
