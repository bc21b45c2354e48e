// Prepares public/: renders the PNG icons from public/icon.svg (so the repository holds no
// binary icons) and copies the bundled test model, which the app serves and precaches.
// `maskable` icons keep their content inside the 80 % safe zone that launchers may crop to.
import { Resvg } from "@resvg/resvg-js";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const pub = join(dirname(fileURLToPath(import.meta.url)), "../public");
const svg = readFileSync(join(pub, "icon.svg"), "utf8");
const inner = svg.replace(/^[\s\S]*?<\/defs>/, "").replace(/<\/svg>\s*$/, "");
const defs = svg.match(/<defs>[\s\S]*?<\/defs>/)[0];
// Full-bleed background, artwork scaled to 80 %.
const maskable = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 512 512">${defs}
  <rect width="512" height="512" fill="url(#bg)"/>
  <g transform="translate(51.2 51.2) scale(0.8)">${inner.replace(/<rect width="512"[^>]*\/>/, "")}</g></svg>`;

const icons = [
  ["icons/icon-192.png", svg, 192],
  ["icons/icon-512.png", svg, 512],
  ["icons/maskable-512.png", maskable, 512],
  ["icons/apple-touch-icon.png", maskable, 180],
];
mkdirSync(join(pub, "icons"), { recursive: true });
for (const [name, source, size] of icons) {
  const png = new Resvg(source, { fitTo: { mode: "width", value: size } }).render().asPng();
  writeFileSync(join(pub, name), png);
}
mkdirSync(join(pub, "models"), { recursive: true });
copyFileSync(join(pub, "../../tests/fixtures/brown-tiny-I2_S.gguf"), join(pub, "models/brown-tiny-I2_S.gguf"));
console.log(`public/: ${icons.map(([n]) => n).join(", ")}, models/brown-tiny-I2_S.gguf`);
