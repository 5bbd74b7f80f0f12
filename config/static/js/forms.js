// Behaviour of plain pages, kept out of them (the Content-Security-Policy runs no inline
// script): a <button data-print> opens the browser's print dialogue (device labels, visit
// sheets); without JavaScript the page says to use the browser's Print command.
document.querySelectorAll("button[data-print]").forEach((button) => {
  button.hidden = false;
  button.addEventListener("click", () => window.print());
});
