// Asking first before an irreversible or disruptive action.
//
// A form opts in with `data-confirm` (the consequence, in a sentence or two) and
// `data-confirm-action` (the label of the button that goes ahead). With
// `data-confirm-name` and `data-confirm-field`, the person must type that name
// (as in GitHub's danger zone) before the button is enabled; the typed text goes
// into the form's field of that name, which the server checks too, so the page
// works without JavaScript (that field is then typed on the page itself).
//
// The listener runs in the capture phase on the document, so it sees the submit
// before any listener of the form (wallet.js signs only once this one has let
// the submit through).

const CONFIRMED = "confirmed";

function field(form, name) {
  return name ? form.querySelector(`[name="${CSS.escape(name)}"]`) : null;
}

function element(tag, props = {}, children = []) {
  const el = document.createElement(tag);
  Object.assign(el, props);
  for (const child of children) el.append(child);
  return el;
}

let counter = 0;

/** Builds the dialog for `form`; resolves to the typed name (or "") once confirmed, or null. */
function ask(form, submitter) {
  const id = `confirm-${++counter}`;
  const expected = form.dataset.confirmName ?? "";
  const heading = element("h2", { id: `${id}-title`, textContent: "Are you sure?" });
  const consequence = element("p", { id: `${id}-text`, textContent: form.dataset.confirm });
  const go = element("button", {
    type: "submit",
    value: "confirm",
    className: "danger",
    textContent: form.dataset.confirmAction || submitter?.textContent?.trim() || "Continue",
  });
  const cancel = element("button", {
    type: "submit",
    value: "cancel",
    className: "secondary",
    textContent: "Cancel",
    formNoValidate: true,
  });
  const body = [heading, consequence];
  let input = null;
  if (expected) {
    input = element("input", {
      id: `${id}-name`,
      type: "text",
      autocomplete: "off",
      spellcheck: false,
    });
    const label = element("label", { htmlFor: input.id }, [
      "Type ",
      element("strong", { textContent: expected }),
      " to confirm.",
    ]);
    body.push(element("p", { className: "field" }, [label, input]));
    go.disabled = true;
    input.addEventListener("input", () => {
      go.disabled = input.value.trim() !== expected;
    });
  }
  const choice = element("form", { method: "dialog", className: "stack" }, [
    ...body,
    element("p", { className: "actions" }, [go, cancel]),
  ]);
  const dialog = element("dialog", { className: "confirm-dialog" }, [choice]);
  dialog.setAttribute("aria-labelledby", heading.id);
  dialog.setAttribute("aria-describedby", consequence.id);
  dialog.dataset.testid = "confirm-dialog";
  document.body.append(dialog);
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      const confirmed = dialog.returnValue === "confirm";
      dialog.remove();
      resolve(confirmed ? (input?.value.trim() ?? "") : null);
      if (!confirmed) submitter?.focus();
    });
    dialog.showModal();
    (input ?? cancel).focus();
  });
}

async function onSubmit(event) {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !("confirm" in form.dataset)) return;
  if (form.dataset.state === CONFIRMED) {
    delete form.dataset.state; // one confirmation, one submit
    return;
  }
  event.preventDefault();
  event.stopImmediatePropagation();
  const submitter = event.submitter;
  const typed = await ask(form, submitter);
  if (typed === null) return;
  const target = field(form, form.dataset.confirmField);
  if (target) target.value = typed;
  form.dataset.state = CONFIRMED;
  form.requestSubmit(submitter && submitter.form === form ? submitter : undefined);
}

export function wire(root = document) {
  // The typed-name field on the page is for browsers without this script; the dialog asks here.
  for (const form of root.querySelectorAll("form[data-confirm-field]")) {
    const typed = field(form, form.dataset.confirmField);
    const wrapper = typed?.closest("[data-confirm-typed]");
    if (wrapper) wrapper.hidden = true;
    if (typed) typed.required = false;
  }
}

document.addEventListener("submit", onSubmit, true);
wire();
