// Progressive enhancement only: every page works without this file.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // Filter selects apply on change (the "Apply filters" button stays for keyboard and no-JS users).
  for (const select of document.querySelectorAll("select[data-autosubmit]")) {
    select.addEventListener("change", () => select.form && select.form.requestSubmit());
  }
  // Ask before dismissing: a dismissed alert group stays quiet even when it fires again.
  for (const form of document.querySelectorAll('form[action^="/alerts/"]')) {
    const status = form.querySelector('input[name="status"]');
    if (status && status.value === "dismissed") {
      form.addEventListener("submit", (event) => {
        if (!window.confirm("Dismiss this alert? New activity of the same group will not reopen it.")) {
          event.preventDefault();
        }
      });
    }
  }
});
