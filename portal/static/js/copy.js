// Copy buttons beside shortened hashes ({% hash %} in portal/core/templatetags/chain_facts.py).
//
// The button ships hidden: without this script it could do nothing. The full value is in
// its data-copy attribute (and in the code's title, shown on hover). Off a secure context
// (plain http on another host than localhost) navigator.clipboard is missing; the value is
// then selected for the person to copy by hand.

function selectText(node) {
  const range = document.createRange();
  range.selectNodeContents(node);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}

async function copy(button) {
  const value = button.dataset.copy;
  const code = button.parentElement.querySelector("code");
  try {
    await navigator.clipboard.writeText(value);
    button.textContent = "Copied";
  } catch {
    code.textContent = value;
    selectText(code);
    button.textContent = "Press Ctrl+C";
  }
  button.dataset.state = "copied";
  setTimeout(() => {
    button.textContent = "Copy";
    delete button.dataset.state;
  }, 2000);
}

export function wire(root = document) {
  for (const button of root.querySelectorAll("button.copy[data-copy]")) {
    button.hidden = false;
    button.addEventListener("click", () => copy(button));
  }
}

wire();
