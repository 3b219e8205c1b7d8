// pydata-sphinx-theme makes every scrollable code block, output and table keyboard-focusable
// (tabindex 0, so that it can be scrolled without a mouse) when the page loads, is resized or
// gains elements; a block inside a hidden cell or solution is not scrollable then and stays
// out of the tab order after the reader opens it. Opening content (a <details> toggle, or a
// click on sphinx-togglebutton's button) re-runs the theme's check, through its resize handler.
(() => {
  const recheck = () => window.requestAnimationFrame(() => window.dispatchEvent(new Event("resize")));
  document.addEventListener("toggle", recheck, true);
  document.addEventListener("click", (event) => {
    if (event.target instanceof Element && event.target.closest(".toggle-button, .admonition-title")) recheck();
  }, true);
})();
