/** Conversations and preferences, kept in IndexedDB so they survive reloads and work offline. */
import { openDB, type DBSchema, type IDBPDatabase } from "idb";
import type { FinishReason, Usage } from "bitnet-web";

export interface StoredMessage {
  id: string;
  role: "user" | "assistant";
  content: string;
  finish?: FinishReason;
  usage?: Usage;
  /** Set when the reply failed; shown in place of the usage line. */
  error?: string;
}

export interface Conversation {
  id: string;
  title: string;
  messages: StoredMessage[];
  createdAt: number;
  updatedAt: number;
}

interface ChatDB extends DBSchema {
  conversations: { key: string; value: Conversation; indexes: { updatedAt: number } };
  prefs: { key: string; value: unknown };
}

export const DB_NAME = "bitnet-chat";
let db: Promise<IDBPDatabase<ChatDB>> | null = null;

function open() {
  db ??= openDB<ChatDB>(DB_NAME, 1, {
    upgrade(d) {
      const c = d.createObjectStore("conversations", { keyPath: "id" });
      c.createIndex("updatedAt", "updatedAt");
      d.createObjectStore("prefs");
    },
  });
  return db;
}

export async function listConversations(): Promise<Conversation[]> {
  const all = await (await open()).getAllFromIndex("conversations", "updatedAt");
  return all.reverse();
}

export async function getConversation(id: string): Promise<Conversation | undefined> {
  return (await open()).get("conversations", id);
}

export async function saveConversation(c: Conversation): Promise<void> {
  await (await open()).put("conversations", c);
}

export async function deleteConversation(id: string): Promise<void> {
  await (await open()).delete("conversations", id);
}

export async function getPref<T>(key: string): Promise<T | undefined> {
  return (await open()).get("prefs", key) as Promise<T | undefined>;
}

export async function setPref(key: string, value: unknown): Promise<void> {
  await (await open()).put("prefs", value, key);
}

export function newConversation(): Conversation {
  const now = Date.now();
  return { id: crypto.randomUUID(), title: "New chat", messages: [], createdAt: now, updatedAt: now };
}
