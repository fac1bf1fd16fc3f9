// The only script: a form with a [data-once] button submits once (its idempotency key
// already makes a second submit harmless; this spares the request).
document.addEventListener("submit", (event) => {
  const button = event.target.querySelector("button[data-once]");
  if (!button) return;
  if (button.dataset.sent) { event.preventDefault(); return; }
  button.dataset.sent = "1";
  button.setAttribute("aria-disabled", "true");
});
