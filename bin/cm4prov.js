#!/usr/bin/env node
// The CLI runs the TypeScript sources directly through tsx's loader: one source of truth,
// no build step between `npm install` and `npx cm4prov`.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
