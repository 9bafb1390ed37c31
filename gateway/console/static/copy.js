// A button that copies a tinker:// path, saying so where a screen reader hears it.

import { el } from "./console.js";

export function copyButton(path) {
  const button = el("button", "Copy path", { type: "button", "aria-label": `Copy ${path}` });
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(path);
      button.textContent = "Copied";
    } catch {
      // a page served over plain http to another machine has no clipboard API: the path is
      // offered selected, to copy by hand
      prompt("Copy the checkpoint's path:", path);
    }
    setTimeout(() => { button.textContent = "Copy path"; }, 2000);
  });
  return button;
}
