// The check-in screen (bot/webapp/checkin.py): the code, then at levels 2 and 3 the
// device's location; the verdict is the server's answer, shown at once.
(function () {
  "use strict";
  // The verdict's colour (webapp.css) by the answer's kind.
  var LOOK = {ok: "ok", late: "ok", duplicate: "ok", pending: "wait", location: "wait",
    busy: "wait"};
  function byId(id) { return document.getElementById(id); }
  function text(key) { return (ATTN.texts && ATTN.texts[key]) || ""; }
  function say(kind, message) {
    var verdict = byId("verdict");
    ATTN.show(verdict, message, LOOK[kind] || "bad");
    verdict.setAttribute("data-kind", kind);
  }
  function showLesson(lesson) {
    if (lesson) { byId("lesson").textContent = lesson; byId("lesson").hidden = false; }
  }
  function busy(on) {
    byId("submit").disabled = on;
    byId("code").disabled = on;
  }
  function failed(answer) {
    busy(false);
    say(answer.data.error || "error", answer.data.message || text("page.error"));
  }
  // The code the QR code carried (start_param `ci_<code>`): only a suggestion, checked by the
  // server like a typed one.
  function startCode() {
    var param = new URLSearchParams(ATTN.initData()).get("start_param") || "";
    var found = /^ci_(\d{6})$/.exec(param);
    return found ? found[1] : "";
  }

  function sendLocation() {
    var done = function (body) {
      ATTN.post("/app/api/checkin/location", body).then(function (answer) {
        if (!answer.data.ok) { failed(answer); return; }
        showLesson(answer.data.lesson);
        say(answer.data.kind, answer.data.text);
        busy(false);
      }, function () { failed({data: {}}); });
    };
    if (!navigator.geolocation) { done({error: "unsupported"}); return; }
    say("location", text("page.checkin.locating"));
    navigator.geolocation.getCurrentPosition(function (position) {
      done({
        latitude: position.coords.latitude,
        longitude: position.coords.longitude,
        accuracy: position.coords.accuracy,
        age_ms: Math.max(0, Date.now() - position.timestamp)
      });
    }, function (error) {
      var why = {1: "denied", 2: "unavailable", 3: "timeout"}[error.code] || "unavailable";
      done({error: why});
    }, {enableHighAccuracy: true, timeout: 20000, maximumAge: 0});
  }

  function submit(event) {
    event.preventDefault();
    var code = byId("code").value.trim();
    if (!code) { return; }
    busy(true);
    say("busy", text("page.checkin.sending"));
    ATTN.post("/app/api/checkin", {code: code}).then(function (answer) {
      if (!answer.data.ok) { failed(answer); return; }
      showLesson(answer.data.lesson);
      say(answer.data.kind, answer.data.text);
      if (answer.data.kind === "location") { sendLocation(); return; }
      busy(false);
      if (answer.data.kind === "wrong" || answer.data.kind === "expired") { byId("code").select(); }
    }, function () { failed({data: {}}); });
  }

  ATTN.ready.then(function () {
    if (!ATTN.initData()) { byId("no-launch").hidden = false; return; }
    if (text("page.checkin.title")) { document.title = text("page.checkin.title"); }
    var code = startCode();
    byId("code").value = code;
    byId("form").hidden = false;
    byId("form").addEventListener("submit", submit);
    if (!code) { byId("code").focus(); }
  });
}());
