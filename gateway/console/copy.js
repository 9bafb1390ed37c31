// A button that copies a tinker:// path, saying so where a screen reader hears it.

import { el } from "./console.js";

export function copyButton(path) {
  const button = el("button", "Copy path", { type: "button", "aria-label": `Copy ${path}` });
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(path);
      button.textContent = "Copied";
    } catch {
      // a page served over plain http to another machine has no clipboard API: select the path instead
      const code = button.closest("tr")?.querySelector("code");
      if (code) getSelection().selectAllChildren(code);
      button.textContent = "Selected: press Ctrl+C";
    }
    setTimeout(() => { button.textContent = "Copy path"; }, 2000);
  });
  return button;
}
