import { defineConfig } from "vite";
import { VitePWA } from "vite-plugin-pwa";
// The headers `npm start`'s server sends (cross-origin isolation, for the engine's threads).
import { ISOLATION } from "./scripts/serve.mjs";

export default defineConfig({
  // Relative URLs: the app works from any sub-path (e.g. a project page on a static host).
  base: "./",
  build: { target: "es2022", sourcemap: true },
  worker: { format: "es" },
  server: { headers: ISOLATION },
  preview: { headers: ISOLATION },
  plugins: [
    VitePWA({
      // "prompt": a new version waits until the person reloads, never mid-reply (src/pwa.ts).
      registerType: "prompt",
      injectRegister: false,
      includeAssets: ["icon.svg", "icons/apple-touch-icon.png"],
      manifest: {
        name: "BitNet Chat — private, offline LLM in your browser",
        short_name: "BitNet Chat",
        description:
          "Chat with BitNet b1.58 ternary language models running entirely on your device, online or offline.",
        start_url: "./",
        scope: "./",
        display: "standalone",
        background_color: "#0f1021",
        theme_color: "#4f46e5",
        categories: ["productivity", "utilities"],
        icons: [
          { src: "icons/icon-192.png", sizes: "192x192", type: "image/png", purpose: "any" },
          { src: "icons/icon-512.png", sizes: "512x512", type: "image/png", purpose: "any" },
          { src: "icons/maskable-512.png", sizes: "512x512", type: "image/png", purpose: "maskable" },
          { src: "icon.svg", sizes: "any", type: "image/svg+xml", purpose: "any" },
        ],
      },
      workbox: {
        // The app shell, the engine's worker, every wasm build (the browser picks one at run
        // time) and the bundled test model, so a first visit is enough to work offline.
        globPatterns: ["**/*.{html,js,css,wasm,svg,png,webmanifest,gguf}"],
        globIgnores: ["**/*.map"],
        maximumFileSizeToCacheInBytes: 16 << 20,
        navigateFallback: "index.html",
        // Control the first visit's page at once, so it works offline without a second visit.
        clientsClaim: true,
        cleanupOutdatedCaches: true,
        // Models from the network are kept by bitnet-web in OPFS; never copy them here too.
        runtimeCaching: [],
      },
    }),
  ],
});
