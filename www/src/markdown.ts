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

// Task-list items are the only inputs: marked writes them as disabled checkboxes, and
// they stay disabled (a reply cannot ask for input).
purify.addHook("uponSanitizeElement", (node, data) => {
  if (data.tagName === "input" && (node as Element).getAttribute("type") !== "checkbox")
    node.parentNode?.removeChild(node);
});
purify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "INPUT") {
    node.setAttribute("type", "checkbox");
    node.setAttribute("disabled", "");
  }
});

const POLICY = {
  FORBID_TAGS: ["style", "img", "form", "button", "textarea", "select", "iframe", "svg", "math"],
  FORBID_ATTR: ["style", "id", "name", "value", "src", "formaction"],
  ALLOW_DATA_ATTR: false,
  // DOMPurify tests every attribute that is not URI-safe against this (`start="3"`,
  // `align="center"`, `type="checkbox"` too), so besides http(s), mailto and fragments it
  // lets through what names no scheme at all; `javascript:`, `data:` and the like stay out.
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:|#|[^a-z]|[a-z+.-]+(?:[^a-z+.\-:]|$))/i,
};

export function renderMarkdown(text: string): string {
  const html = marked.parse(text) as string;
  return purify.sanitize(html, POLICY) as string;
}
