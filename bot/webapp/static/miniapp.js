// Shared by the Mini App's pages (bot/webapp/): the launch data and the calls to the server.
// No Telegram SDK is loaded: Telegram passes the launch data in the URL fragment
// (#tgWebAppData=...), and window.Telegram.WebApp is used only where a client provides it.
(function () {
  "use strict";
  function webApp() {
    return (window.Telegram && window.Telegram.WebApp) || null;
  }
  function initData() {
    var app = webApp();
    if (app && app.initData) { return app.initData; }
    var hash = location.hash.replace(/^#/, "");
    return new URLSearchParams(hash).get("tgWebAppData") || "";
  }
  function post(path, body) {
    var payload = Object.assign({init_data: initData()}, body || {});
    return fetch(path, {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify(payload),
      cache: "no-store",
      credentials: "omit"
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (data) {
        if (!r.ok) { data.failed = true; data.status = r.status; }
        return data;
      });
    });
  }
  function ready() {
    var app = webApp();
    if (app && app.ready) { app.ready(); }
  }
  function setLocale(locale) {
    if (locale) { document.documentElement.lang = locale; }
  }
  window.ATTN = {initData: initData, post: post, ready: ready, setLocale: setLocale};
}());
