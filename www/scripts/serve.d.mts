import type { Server } from "node:http";
export function serve(options: { root: string; port?: number; host?: string }): Promise<Server>;
export const ISOLATION: Record<string, string>;
/** The request path with its %-escapes decoded, or null when they are not valid UTF-8. */
export function decodePath(pathname: string): string | null;
