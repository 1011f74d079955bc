// The upload page's keys, settled before any file is chosen: who signs (the wallet, or the
// demo portal's keystore) and the hospital's UID secret (the admin's file, or derived by the
// governance key as chain/uid_secret.py does: SHA-256 of its deterministic EIP-712 signature).
// Also keeps the form's other fields across a reload (browsers never restore chosen files).

import { fromHex, sha256Hex } from "./medchain-crypto.js";
import { WalletError, hasWallet, signTypedData } from "./wallet.js";

const form = document.getElementById("dataset-upload");
const walletState = document.getElementById("wallet-state");
const secretState = document.getElementById("uid-secret-state");
const errorEl = document.getElementById("upload-error");
const demoBox = document.getElementById("use-demo-keystore");
const saveButton = document.getElementById("save-uid-secret");
const STORE = `medchain-upload:${location.pathname}`;

export class KeyError extends Error {}

let derived = null; // the secret from the wallet or the demo keystore; never stored

function say(el, text, kind = "info") {
  el.textContent = text;
  el.dataset.kind = kind;
  el.classList.toggle("error", kind === "error");
}

/** Show an error beside the upload button (where the person pressed), or clear it. */
export function showError(text) {
  errorEl.textContent = text ?? "";
  errorEl.hidden = !text;
}

function keyOf(address) {
  const a = address.toLowerCase();
  if (a === form.dataset.governanceAddress.toLowerCase()) return "governance";
  const delegates = (form.dataset.dataDelegates || "").toLowerCase().split(",");
  return delegates.includes(a) ? "delegate" : null;
}

async function describeWallet() {
  const member = form.dataset.member;
  if (!hasWallet()) {
    if (demoBox) {
      demoBox.checked = true;
      say(walletState, "No browser wallet found: this demo portal signs with its demo keystore instead (ticked below).");
    } else {
      say(
        walletState,
        "No browser wallet found. Install or unlock one (for example MetaMask) holding " +
          `${member}'s governance key or a Data delegate key, then reload this page.`,
        "error",
      );
    }
    return;
  }
  let accounts = [];
  try {
    accounts = await window.ethereum.request({ method: "eth_accounts" }); // asks nothing
  } catch {
    // shown as "installed" below; the upload asks again
  }
  if (!accounts?.length) {
    say(walletState, "A wallet is installed. It asks you to connect an account when you upload.");
    return;
  }
  const kind = keyOf(accounts[0]);
  const names = { governance: `${member}'s governance key`, delegate: `a Data delegate key of ${member}` };
  say(
    walletState,
    kind
      ? `Wallet connected: ${accounts[0]}, ${names[kind]}.`
      : `Wallet connected: ${accounts[0]} is neither ${member}'s governance key nor one of its ` +
          "Data delegate keys: switch accounts in your wallet before you upload.",
    kind ? "done" : "error",
  );
}

/** "demo" or "wallet"; refused (in words) when neither can sign. */
export function signingMode() {
  if (demoBox?.checked) return "demo";
  if (!hasWallet()) {
    throw new KeyError(
      "No browser wallet was found to sign the manifest. Install or unlock one (for example " +
        "MetaMask) and reload this page" + (demoBox ? ", or tick “Sign with the demo keystore”." : "."),
    );
  }
  return "wallet";
}

async function secretReady(bytes, how) {
  derived = bytes;
  const fingerprint = (await sha256Hex(bytes)).slice(0, 8);
  say(secretState, `UID secret ready, ${how} (fingerprint ${fingerprint}).`, "done");
  saveButton.hidden = false;
}

async function deriveWithWallet() {
  const typed = JSON.parse(form.dataset.uidTyped);
  const governance = form.dataset.governanceAddress;
  say(secretState, "Confirm in your wallet: sign the UID secret message…");
  const signature = fromHex(await signTypedData(typed, governance));
  if (signature.length !== 65) throw new KeyError("the wallet's signature is not 65 bytes");
  if (signature[64] < 27) signature[64] += 27; // some wallets answer v as 0 or 1
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", signature));
  await secretReady(digest, "derived by the governance wallet");
}

async function deriveWithDemo() {
  const response = await fetch(form.dataset.demoUidSecretUrl, {
    method: "POST",
    headers: {
      Accept: "application/json",
      "X-CSRFToken": form.querySelector("input[name=csrfmiddlewaretoken]")?.value ?? "",
    },
    credentials: "same-origin",
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new KeyError(body.error ?? `the portal answered HTTP ${response.status}`);
  await secretReady(fromHex(body.secret), "derived by the demo keystore");
}

// The page renders these buttons disabled: a click before this module has loaded would do
// nothing at all, so they come alive only once their handler is in place.
function wire(button, action) {
  if (!button) return;
  button.disabled = false;
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await action();
    } catch (err) {
      const known = err instanceof KeyError || err instanceof WalletError;
      say(secretState, known ? err.message : `Something went wrong: ${err?.message ?? err}`, "error");
    } finally {
      button.disabled = false;
    }
  });
}

/** The secret for this upload: the chosen file, else the one derived on this page. */
export async function uidSecretBytes() {
  const file = document.getElementById("uid-secret-file").files[0];
  if (file) {
    const bytes = new Uint8Array(await file.arrayBuffer());
    if (bytes.length === 0) throw new KeyError("the UID secret file is empty");
    return bytes;
  }
  if (derived) return derived.slice();
  throw new KeyError(
    "choose your hospital's UID secret file, or derive the secret (step 2): without it the " +
      "UIDs cannot be replaced",
  );
}

function saveSecret() {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([derived], { type: "application/octet-stream" }));
  link.download = "uid-secret.bin";
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

function remember() {
  const saved = {
    title: document.getElementById("dataset-title").value,
    extra: document.getElementById("extra-nodes").value,
    skip: document.getElementById("skip-refused").checked,
    demo: demoBox?.checked ?? false,
    nodes: [...form.querySelectorAll("input[name=node]")].map((b) => [b.value, b.checked]),
  };
  sessionStorage.setItem(STORE, JSON.stringify(saved));
}

function restore() {
  let saved;
  try {
    saved = JSON.parse(sessionStorage.getItem(STORE) ?? "null");
  } catch {
    saved = null;
  }
  if (!saved) return;
  document.getElementById("dataset-title").value = saved.title ?? "";
  document.getElementById("extra-nodes").value = saved.extra ?? "";
  document.getElementById("skip-refused").checked = Boolean(saved.skip);
  if (demoBox && saved.demo) demoBox.checked = true;
  const nodes = new Map(saved.nodes ?? []);
  for (const box of form.querySelectorAll("input[name=node]")) {
    if (nodes.has(box.value)) box.checked = nodes.get(box.value);
  }
}

/** Forget the kept fields once an upload is done. */
export function forget() {
  sessionStorage.removeItem(STORE);
}

restore();
form.addEventListener("input", remember);
form.addEventListener("change", remember);
wire(document.getElementById("derive-uid-secret"), deriveWithWallet);
wire(document.getElementById("demo-uid-secret"), deriveWithDemo);
saveButton.addEventListener("click", saveSecret);
document.getElementById("uid-secret-file").addEventListener("change", () => {
  if (document.getElementById("uid-secret-file").files.length) {
    say(secretState, "UID secret: the chosen file is used.", "done");
  }
});
describeWallet();
