import type { Command } from 'commander';
import { createApiClient, type ApiClient } from './api-client.js';
import { resolveConnection, withConnectionOptions, type ConnectionOptions } from './connection.js';
import type { CliSurroundings } from './server-location.js';

/** What every admin-API command needs: its connection options, and a client built from them. */
export function createCommandContext(cli: CliSurroundings) {
  return {
    command(parent: Command, name: string, description: string): Command {
      return withConnectionOptions(parent.command(name).description(description));
    },
    /** `options` are the command's parsed options, which include the connection ones. */
    api(options: object): ApiClient {
      return createApiClient(resolveConnection(options as ConnectionOptions, cli));
    },
  };
}

export type CommandContext = ReturnType<typeof createCommandContext>;
