// crewyard console: places the HTML fragments a page's live stream sends (see live.py).
// It never builds markup from event data: the server renders and escapes every fragment.
(() => {
  "use strict";

  // Each top-level element of a fragment replaces the element with its id, or goes into the
  // element named by data-into (at its start with data-at="start"), or removes it (data-remove).
  const place = (html) => {
    const template = document.createElement("template");
    template.innerHTML = html;
    let grew = false;
    for (const node of Array.from(template.content.children)) {
      const existing = node.id ? document.getElementById(node.id) : null;
      if (node.hasAttribute("data-remove")) {
        if (existing) existing.remove();
        continue;
      }
      if (existing) {
        keepOpen(existing, node);
        existing.replaceWith(node);
        continue;
      }
      const into = node.dataset.into ? document.getElementById(node.dataset.into) : null;
      if (!into) continue;
      if (node.dataset.at === "start") into.prepend(node);
      else into.append(node);
      grew = grew || into.closest("[data-follow]") !== null;
    }
    if (grew && following) window.scrollTo(0, document.documentElement.scrollHeight);
  };

  // A list marked data-follow (a live run's timeline) keeps its newest entries in view: the
  // page scrolls to them as they arrive, until the reader scrolls away from the end; scrolling
  // back to the end follows again.
  const nearEnd = () =>
    window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 48;
  let following = true;
  window.addEventListener("scroll", () => { following = nearEnd(); }, { passive: true });

  // A <details> the reader opened or closed stays so when its section is replaced.
  const keepOpen = (old, fresh) => {
    const before = old.querySelectorAll("details");
    const after = fresh.querySelectorAll("details");
    before.forEach((d, i) => {
      if (after[i]) after[i].open = d.open;
    });
  };

  const follow = (element) => {
    const state = document.getElementById("live-state");
    const show = (value) => state && state.setAttribute("data-state", value);
    const source = new EventSource(element.dataset.live);
    source.addEventListener("open", () => show("live"));
    source.addEventListener("error", () => show(source.readyState === EventSource.CLOSED ? "off" : "reconnecting"));
    source.addEventListener("html", (event) => place(event.data));
    source.addEventListener("end", () => {
      source.close();
      show("done");
    });
  };

  document.querySelectorAll("[data-live]").forEach(follow);

  // The answer to a form that made a key or a secret (shown once): a reload must not post the
  // form again and make another, so this history entry becomes the page's own address.
  const shown = document.querySelector("section.created[data-home]");
  if (shown && shown.dataset.home) history.replaceState(null, "", shown.dataset.home);
})();
