// A fresh app that installed the packed bitnet-web tarball, as any outside app would.
import { CreateEngine } from "bitnet-web";

const out = document.getElementById("out");
const params = new URLSearchParams(location.search);
try {
  const engine = await CreateEngine({ model: params.get("model"), cache: false });
  const reply = await engine.chat.completions.create({
    messages: [{ role: "user", content: params.get("prompt") }],
    temperature: 0,
    max_tokens: Number(params.get("max_tokens")),
  });
  out.textContent = JSON.stringify({ backend: engine.backend, text: reply.choices[0].message.content });
} catch (e) {
  out.textContent = JSON.stringify({ error: e.kind, message: e.message });
}
document.title = "done";
