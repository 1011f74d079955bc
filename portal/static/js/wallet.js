// Signing with the member's own wallet (EIP-1193, eth_signTypedData_v4), or the demo keystore.
//
// A page that signs renders consortium/_signer.html once: the one wallet status, and, where
// the demo keystore holds the signer's key, the one choice of signer (wallet or demo
// keystore). A form opts in with `data-typed-data-url`; it has one button per choice, marked
// `data-wallet-sign`. With the wallet chosen, pressing one POSTs the form (or only the fields
// named in `data-typed-data-fields`) to that URL, which answers {typed, signer} or {error};
// the wallet signs the typed data; the signature goes into the form's `signature` field and
// the form is submitted. With the demo keystore chosen, the form's `demo` field is enabled
// and the form is submitted as it is. A button that cannot work (no wallet, another account)
// is disabled, and the status says why.

const NO_WALLET =
  "No browser wallet found: install one (for example MetaMask) and reload this page to sign.";

export class WalletError extends Error {}

export function hasWallet() {
  return typeof window.ethereum?.request === "function";
}

/** The wallet's account to sign with; `expected` (an address) must be among them. */
export async function requestAccount(expected) {
  if (!hasWallet()) throw new WalletError(NO_WALLET);
  let accounts;
  try {
    accounts = await window.ethereum.request({ method: "eth_requestAccounts" });
  } catch (err) {
    throw walletError(err, "share an account");
  }
  if (!Array.isArray(accounts) || accounts.length === 0) {
    throw new WalletError("The wallet shared no account: unlock it and try again.");
  }
  if (!expected) return accounts[0];
  const found = accounts.find((a) => a.toLowerCase() === expected.toLowerCase());
  if (!found) {
    throw new WalletError(
      `The wallet's account ${accounts[0]} is not ${expected}, the address that must sign. ` +
        "Switch to that account in your wallet and try again.",
    );
  }
  return found;
}

/** Sign EIP-712 typed data; resolves to the 0x-hex signature the wallet returns. */
export async function signTypedData(typed, expected) {
  const address = await requestAccount(expected);
  try {
    return await window.ethereum.request({
      method: "eth_signTypedData_v4",
      params: [address, JSON.stringify(typed)],
    });
  } catch (err) {
    throw walletError(err, "sign");
  }
}

function walletError(err, what) {
  if (err?.code === 4001) {
    return new WalletError("You declined the request in your wallet; nothing was sent.");
  }
  return new WalletError(`The wallet could not ${what}: ${err?.message ?? err}`);
}

function signerBox() {
  return document.querySelector("[data-signer]");
}

/** "wallet" or "demo": the page's one choice of signer (the wallet where there is no choice). */
export function chosenSigner() {
  return document.querySelector("[data-signer] input[name=signer]:checked")?.value ?? "wallet";
}

function statusEl() {
  return document.getElementById("wallet-status");
}

function show(text, kind = "info") {
  const el = statusEl();
  if (!el) return;
  el.textContent = text;
  el.dataset.kind = kind;
  el.setAttribute("role", kind === "error" ? "alert" : "status");
}

function short(address) {
  return `${address.slice(0, 6)}…${address.slice(-4)}`;
}

/** What the wallet holds, without prompting: none, locked, match, other or any (no one expected). */
async function readWallet(expected) {
  if (!hasWallet()) return { kind: "none" };
  let accounts = [];
  try {
    accounts = await window.ethereum.request({ method: "eth_accounts" });
  } catch {
    accounts = [];
  }
  if (!Array.isArray(accounts) || accounts.length === 0) return { kind: "locked" };
  if (!expected) return { kind: "any", account: accounts[0] };
  const found = accounts.find((a) => a.toLowerCase() === expected.toLowerCase());
  return found ? { kind: "match", account: found } : { kind: "other", account: accounts[0] };
}

/** The status line and whether the wallet can sign, for the wallet state `w`. */
function describe(w, expected, name, demo) {
  const orDemo = demo ? ", or choose the demo keystore" : "";
  const key = name ? `${name}'s governance key` : "the governance key";
  switch (w.kind) {
    case "none":
      return {
        ok: false,
        kind: "warning",
        text: demo
          ? "No browser wallet found: install one, or use the demo keystore."
          : NO_WALLET,
      };
    case "locked":
      return {
        ok: true,
        kind: "info",
        text: "Wallet found; it asks which account to share when you sign.",
      };
    case "other":
      return {
        ok: false,
        kind: "warning",
        text:
          `Wallet: ${short(w.account)} is not ${key} (${short(expected)}): ` +
          `switch to that account in your wallet${orDemo}.`,
      };
    case "match":
      return { ok: true, kind: "info", text: `Wallet: ${short(w.account)} (matches ${key}).` };
    default:
      return { ok: true, kind: "info", text: `Wallet: ${short(w.account)}.` };
  }
}

let refreshing = 0;

/** Re-reads the wallet and the choice of signer; enables or disables the buttons with the reason. */
export async function refresh() {
  const box = signerBox();
  const expected = box?.dataset.signerAddress ?? "";
  const name = box?.dataset.signerName ?? "";
  const demo = !!box?.querySelector("input[name=signer][value=demo]");
  const turn = ++refreshing;
  const w = await readWallet(expected);
  if (turn !== refreshing) return; // a newer refresh is under way
  const useDemo = chosenSigner() === "demo";
  const state = useDemo
    ? {
        ok: true,
        kind: "info",
        text: `Signing with the demo keystore, which this demo portal keeps for ${name}; no wallet needed.`,
      }
    : describe(w, expected, name, demo);
  show(state.text, state.kind);
  for (const field of document.querySelectorAll("form[data-typed-data-url] input[name=demo]")) {
    field.disabled = !useDemo;
  }
  for (const button of document.querySelectorAll("[data-wallet-sign]")) {
    button.disabled = !state.ok;
    if (state.ok) button.removeAttribute("title");
    else button.title = state.text;
    if (statusEl()) button.setAttribute("aria-describedby", "wallet-status");
  }
  for (const button of document.querySelectorAll("[data-wallet-fill]")) {
    button.disabled = w.kind === "none";
  }
}

function csrfToken(form) {
  return form.querySelector("input[name=csrfmiddlewaretoken]")?.value ?? "";
}

function typedDataBody(form) {
  const all = new FormData(form);
  const fields = form.dataset.typedDataFields;
  if (!fields) return all;
  const body = new FormData();
  body.set("csrfmiddlewaretoken", csrfToken(form));
  for (const name of fields.split(/\s+/).filter(Boolean)) body.set(name, all.get(name) ?? "");
  return body;
}

async function fetchTypedData(form) {
  const response = await fetch(form.dataset.typedDataUrl, {
    method: "POST",
    body: typedDataBody(form),
    credentials: "same-origin",
    headers: { Accept: "application/json", "X-CSRFToken": csrfToken(form) },
  });
  let body = null;
  try {
    body = await response.json();
  } catch {
    // fall through: reported below
  }
  if (!response.ok || !body?.typed) {
    throw new WalletError(body?.error ?? `The portal answered ${response.status}; try again.`);
  }
  return body;
}

function setBusy(form, busy) {
  for (const button of form.querySelectorAll("button")) button.disabled = busy;
  form.toggleAttribute("aria-busy", busy);
}

async function onSubmit(event) {
  const form = event.currentTarget;
  const submitter = event.submitter;
  if (!submitter || !("walletSign" in submitter.dataset)) return; // a plain submit
  if (chosenSigner() === "demo") return; // the enabled `demo` field asks the portal to sign
  event.preventDefault();
  if (!form.reportValidity()) return;
  setBusy(form, true);
  try {
    show("Preparing what to sign…");
    const { typed, signer } = await fetchTypedData(form);
    show("Confirm the signature in your wallet…");
    const signature = await signTypedData(typed, signer);
    form.querySelector("input[name=signature]").value = signature;
    show("Signed. Sending…");
    form.submit(); // native submit: no second submit event
  } catch (err) {
    setBusy(form, false);
    await refresh();
    show(err instanceof WalletError ? err.message : `Something went wrong: ${err}`, "error");
  }
}

async function onFill(event) {
  const button = event.currentTarget;
  const form = button.form ?? document;
  const input = form.querySelector(`[name="${button.dataset.walletFill}"]`);
  try {
    input.value = await requestAccount();
    input.dispatchEvent(new Event("change", { bubbles: true }));
    show(`Using your wallet's account ${input.value}.`);
  } catch (err) {
    show(err.message, "error");
  }
}

// Signing buttons are rendered disabled, so that none submits before this module listens.
export function wire(root = document) {
  for (const form of root.querySelectorAll("form[data-typed-data-url]")) {
    form.addEventListener("submit", onSubmit);
  }
  for (const button of root.querySelectorAll("[data-wallet-fill]")) {
    button.addEventListener("click", onFill);
  }
  for (const radio of root.querySelectorAll("[data-signer] input[name=signer]")) {
    radio.addEventListener("change", refresh);
  }
  window.ethereum?.on?.("accountsChanged", refresh);
  // As on the upload page: with no wallet, a demo portal starts on the demo keystore.
  const demo = root.querySelector("[data-signer] input[name=signer][value=demo]");
  if (demo && !hasWallet()) demo.checked = true;
  return refresh();
}

wire();
