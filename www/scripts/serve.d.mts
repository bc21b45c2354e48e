import type { Server } from "node:http";
export function serve(options: { root: string; port?: number; host?: string }): Promise<Server>;
export const ISOLATION: Record<string, string>;
