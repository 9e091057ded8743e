// The Mini App's shared script (bot/webapp/pages.py). No framework, no third-party code:
// Telegram's JS SDK is not loaded, so `window.Telegram.WebApp` is used only when the client
// provides it; otherwise the launch data is read from the URL fragment, where Telegram puts
// it as `tgWebAppData` (https://core.telegram.org/bots/webapps#initializing-mini-apps).
"use strict";
(function () {
  function sdk() {
    return (window.Telegram && window.Telegram.WebApp) || null;
  }

  function initData() {
    var app = sdk();
    if (app && app.initData) {
      return app.initData;
    }
    var hash = window.location.hash.replace(/^#/, "");
    return new URLSearchParams(hash).get("tgWebAppData") || "";
  }

  // Unverified: only for choosing the page's language before the server has answered.
  function language() {
    try {
      var user = JSON.parse(new URLSearchParams(initData()).get("user") || "{}");
      return user.language_code || navigator.language || "en";
    } catch (e) {
      return navigator.language || "en";
    }
  }

  function fill(texts) {
    document.querySelectorAll("[data-t]").forEach(function (el) {
      var text = texts[el.getAttribute("data-t")];
      if (text === undefined) {
        return;
      }
      if (el.hasAttribute("data-t-attr")) {
        el.setAttribute(el.getAttribute("data-t-attr"), text);
      } else {
        el.textContent = text;
      }
    });
  }

  function loadTexts(page) {
    var url = "/app/" + page + "/texts?lang=" + encodeURIComponent(language());
    return fetch(url, { credentials: "omit" })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        document.documentElement.lang = data.lang;
        ATTN.texts = data.texts;
        fill(data.texts);
        return data.texts;
      });
  }

  // POST a JSON body with the launch data; resolves to {status, data} whatever the status.
  function post(path, body) {
    var payload = Object.assign({ init_data: initData() }, body || {});
    return fetch(path, {
      method: "POST",
      credentials: "omit",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(payload),
    }).then(function (r) {
      return r.json().then(
        function (data) { return { status: r.status, data: data }; },
        function () { return { status: r.status, data: { ok: false, error: "http", message: "" } }; }
      );
    });
  }

  function show(el, text, kind) {
    el.textContent = text;
    el.className = "verdict " + (kind || "");
    el.hidden = false;
  }

  var ATTN = {
    initData: initData,
    language: language,
    post: post,
    show: show,
    texts: {},
    ready: null,
    sdk: sdk,
  };
  window.ATTN = ATTN;

  ATTN.ready = new Promise(function (resolve) {
    document.addEventListener("DOMContentLoaded", function () {
      var app = sdk();
      if (app) {
        app.ready();
        app.expand();
      }
      var page = document.body.getAttribute("data-page");
      (page ? loadTexts(page) : Promise.resolve({})).then(resolve, function () { resolve({}); });
    });
  });
})();
