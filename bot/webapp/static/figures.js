// The figures page (bot/webapp/figures.py): per course attended / held and the percentage
// as a bar, then the dated list. Everything is set as text, never as markup.
(function () {
  "use strict";
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }
  function course(c) {
    var attended = (ATTN.texts && ATTN.texts["page.figures.attended"]) || "";
    var box = el("section", "course" + (c.below ? " below" : ""));
    box.appendChild(el("h2", "", c.label));
    var figure = el("div", "figure");
    figure.appendChild(el("span", "attended", c.attended + " / " + c.held + " " + attended));
    figure.appendChild(el("b", "percent", c.percent_text));
    box.appendChild(figure);
    var bar = el("div", "bar");
    bar.setAttribute("role", "img");
    bar.setAttribute("aria-label", c.percent_text);
    var fill = el("span");
    // The width is set through the CSSOM, which the page's style-src allows (no inline style).
    fill.style.width = Math.max(0, Math.min(100, c.percent)) + "%";
    bar.appendChild(fill);
    box.appendChild(bar);
    if (c.below_text) { box.appendChild(el("p", "below-text", c.below_text)); }
    var list = el("ul", "rows");
    c.rows.forEach(function (row) {
      var item = el("li", "row " + row.status);
      item.appendChild(document.createTextNode(row.icon + " " + row.date + " · " + row.lesson));
      if (row.note) { item.appendChild(el("span", "note", " · " + row.note)); }
      list.appendChild(item);
    });
    box.appendChild(list);
    return box;
  }
  function show(data) {
    if (ATTN.texts && ATTN.texts["page.figures.title"]) {
      document.title = ATTN.texts["page.figures.title"];
    }
    document.getElementById("message").textContent = data.text || "";
    var box = document.getElementById("courses");
    (data.courses || []).forEach(function (c) { box.appendChild(course(c)); });
  }
  ATTN.ready.then(function () {
    if (!ATTN.initData()) { document.getElementById("no-launch").hidden = false; return null; }
    return ATTN.post("/app/api/figures").then(function (answer) {
      if (!answer.data.ok) {
        document.getElementById("message").textContent =
          answer.data.message || (ATTN.texts && ATTN.texts["page.error"]) || "";
        return;
      }
      show(answer.data);
    });
  });
}());
