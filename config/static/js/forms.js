// Behaviour of plain forms, kept out of the pages (the Content-Security-Policy runs no
// inline script): a <select data-submit-on-change> submits its form when changed.
document.querySelectorAll("select[data-submit-on-change]").forEach((select) => {
  select.addEventListener("change", () => select.form.submit());
});
