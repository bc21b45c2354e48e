/**
 * Model output → safe HTML. Two layers, because the output is untrusted text:
 * raw HTML in the Markdown is shown as text (a reply that says `<script>` shows the
 * tag, as a chat should), and DOMPurify cleans whatever marked produced. The page's
 * Content-Security-Policy is the third layer.
 */
import DOMPurify from "dompurify";
import { Marked } from "marked";

const escapeHtml = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);

const marked = new Marked({
  gfm: true,
  breaks: true,
  async: false,
  renderer: {
    html: ({ text }) => escapeHtml(text),
    // Images would make the browser fetch from wherever the model says: show the link instead.
    image: ({ href, text }) => `<a href="${escapeHtml(href)}">${escapeHtml(text || href)}</a>`,
  },
});

const purify = DOMPurify(window);
purify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  }
});

// Model output must not borrow the app's own classes (to pose as its UI); only code
// blocks keep their language, for the label above them.
purify.addHook("uponSanitizeAttribute", (node, data) => {
  if (data.attrName === "class") {
    data.keepAttr = node.tagName === "CODE" && /^language-[\w+#-]{1,32}$/.test(data.attrValue);
  }
});

const POLICY = {
  FORBID_TAGS: ["style", "img", "form", "input", "button", "textarea", "select", "iframe", "svg", "math"],
  FORBID_ATTR: ["style", "id", "name"],
  ALLOW_DATA_ATTR: false,
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:|#)/i,
};

export function renderMarkdown(text: string): string {
  const html = marked.parse(text) as string;
  return purify.sanitize(html, POLICY) as string;
}
