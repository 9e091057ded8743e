// The check-in screen (bot/webapp/checkin.py): the code, then at levels 2 and 3 the
// device's location; the verdict is the server's answer, shown at once.
(function () {
  "use strict";
  var labels = {};
  function byId(id) { return document.getElementById(id); }
  function say(kind, text) {
    var verdict = byId("verdict");
    verdict.setAttribute("data-kind", kind);
    verdict.textContent = text;
  }
  function showLesson(lesson) {
    if (lesson) { byId("lesson").textContent = lesson; byId("lesson").hidden = false; }
  }
  function busy(on, label) {
    byId("submit").disabled = on;
    byId("code").disabled = on;
    if (on && label) { say("busy", label); }
  }
  function fail() { busy(false); say("error", labels.error || "Error"); }

  function sendLocation() {
    var done = function (body) {
      ATTN.post("api/checkin/location", body).then(function (answer) {
        if (answer.failed) { fail(); return; }
        showLesson(answer.lesson);
        say(answer.kind, answer.text);
        busy(false);
      }, fail);
    };
    if (!navigator.geolocation) { done({error: "unsupported"}); return; }
    say("location", labels.locating);
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
    busy(true, labels.sending);
    ATTN.post("api/checkin", {code: code}).then(function (answer) {
      if (answer.failed) { fail(); return; }
      showLesson(answer.lesson);
      say(answer.kind, answer.text);
      if (answer.kind === "location") { sendLocation(); return; }
      busy(false);
      if (answer.kind === "wrong" || answer.kind === "expired") { byId("code").select(); }
    }, fail);
  }

  function start() {
    if (!ATTN.initData()) { byId("no-launch").hidden = false; return; }
    ATTN.post("api/checkin/open").then(function (screen) {
      if (screen.failed) { say("error", screen.text || "Error"); return; }
      labels = screen.labels;
      ATTN.setLocale(screen.locale);
      document.title = labels.title;
      byId("title").textContent = labels.title;
      byId("code-label").textContent = labels.code;
      byId("submit").textContent = labels.submit;
      byId("code").value = screen.code || "";
      byId("form").hidden = false;
      byId("form").addEventListener("submit", submit);
      if (!screen.code) { byId("code").focus(); }
      ATTN.ready();
    }, function () { say("error", "Error"); });
  }
  start();
}());
