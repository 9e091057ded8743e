// The projector page (bot/projector.py): polls its state every second, shows the code, the
// count and the QR code, and moves to the next screen address the server hands out (the one
// in the address bar stops working a minute after it was issued).
(function () {
  "use strict";
  var body = document.body;
  var token = body.getAttribute("data-token");
  var code = body.getAttribute("data-code");
  var poll = parseInt(body.getAttribute("data-poll"), 10) || 1000;
  function byId(id) { return document.getElementById(id); }
  function show(s) {
    byId("code").textContent = s.code;
    byId("present").textContent = s.present;
    byId("cap").textContent = s.cap ? " / " + s.cap : "";
    byId("minutes").textContent = s.minutes_left;
    var rotation = byId("rotation");
    if (s.next_code_in === null || s.next_code_in === undefined) {
      rotation.hidden = true;
    } else {
      rotation.hidden = false;
      byId("countdown").textContent = s.next_code_in;
    }
    if (s.code !== code) {
      // The server's own SVG markup of the QR code (segno), nothing a user typed.
      byId("qr").innerHTML = s.qr;
      code = s.code;
    }
    if (s.next && s.next !== token) {
      token = s.next;
      history.replaceState(null, "", token);
    }
  }
  function tick() {
    fetch(token + "/state", {cache: "no-store", credentials: "omit"}).then(function (r) {
      if (r.status === 404) { location.replace(token); return null; }
      return r.ok ? r.json() : null;
    }).then(function (s) { if (s) { show(s); } }).catch(function () {});
  }
  setInterval(tick, poll);
}());
