// Signing with the member's own wallet (EIP-1193, eth_signTypedData_v4).
//
// A form opts in with `data-typed-data-url`: pressing one of its buttons marked
// `data-wallet-sign` POSTs the form (or only the fields named in
// `data-typed-data-fields`) to that URL, which answers {typed, signer} or
// {error}; the wallet signs the typed data; the signature goes into the form's
// `signature` field and the form is submitted. Other buttons (such as "Sign
// with demo keystore") submit the form as it is.

const NO_WALLET =
  "No browser wallet was found. Install or unlock an EIP-1193 wallet (for example MetaMask) " +
  "and reload this page to sign.";

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

function statusOf(form) {
  return form.querySelector("[data-wallet-status]") ?? document.getElementById("wallet-status");
}

function show(form, text, kind = "info") {
  const el = statusOf(form);
  if (!el) return;
  el.textContent = text;
  el.dataset.kind = kind;
  el.setAttribute("role", kind === "error" ? "alert" : "status");
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
  event.preventDefault();
  if (!form.reportValidity()) return;
  setBusy(form, true);
  try {
    show(form, "Preparing what to sign…");
    const { typed, signer } = await fetchTypedData(form);
    show(form, "Confirm the signature in your wallet…");
    const signature = await signTypedData(typed, signer);
    form.querySelector("input[name=signature]").value = signature;
    show(form, "Signed. Sending…");
    form.submit(); // native submit: no second submit event
  } catch (err) {
    show(form, err instanceof WalletError ? err.message : `Something went wrong: ${err}`, "error");
    setBusy(form, false);
  }
}

async function onFill(event) {
  const button = event.currentTarget;
  const form = button.form ?? document;
  const input = form.querySelector(`[name="${button.dataset.walletFill}"]`);
  try {
    input.value = await requestAccount();
    input.dispatchEvent(new Event("change", { bubbles: true }));
    show(button.form, `Using your wallet's account ${input.value}.`);
  } catch (err) {
    show(button.form, err.message, "error");
  }
}

// Wallet buttons are rendered disabled, so that none submits before this module listens.
export function wire(root = document) {
  for (const form of root.querySelectorAll("form[data-typed-data-url]")) {
    form.addEventListener("submit", onSubmit);
    if (!hasWallet()) show(form, NO_WALLET, "warning");
  }
  for (const button of root.querySelectorAll("[data-wallet-fill]")) {
    button.addEventListener("click", onFill);
  }
  for (const button of root.querySelectorAll("[data-wallet-sign], [data-wallet-fill]")) {
    button.disabled = false;
  }
}

wire();
