// The sign-in page (bot/webapp/login.py): posts the user name and password with the launch
// data, shows the outcome, and while the sign-on waits in line, its place (polled).
"use strict";
(function () {
  var POLL_MS = 2000;

  function verdict(text, kind) {
    ATTN.show(document.getElementById("verdict"), text, kind);
  }

  // While in line, a poll that does not get an answer (the server restarting, the network
  // away) is simply repeated: the place is kept in Redis, and an error here would send the
  // student to type everything again for nothing.
  function poll(ticket) {
    window.setTimeout(function () {
      ATTN.post("/app/api/login/status", { ticket: ticket }).then(
        function (reply) {
          var data = reply.data || {};
          if (!data.ok && (reply.status >= 500 || reply.status === 429 || data.error === "http")) {
            poll(ticket);
            return;
          }
          answered(reply);
        },
        function () { poll(ticket); }
      );
    }, POLL_MS);
  }

  function answered(reply) {
    var data = reply.data || {};
    var button = document.getElementById("submit");
    if (!data.ok) {
      button.disabled = false;
      verdict(data.message || ATTN.texts["webapp.error"] || "Error", "bad");
      return;
    }
    if (data.state === "queued") {
      verdict(data.message, "wait");
      poll(data.ticket);
      return;
    }
    verdict(data.message, data.success ? "ok" : "bad");
    if (data.success) {
      document.getElementById("login").hidden = true;
      var app = ATTN.sdk();
      if (app && app.HapticFeedback) {
        app.HapticFeedback.notificationOccurred("success");
      }
    } else {
      button.disabled = false;
      document.getElementById("password").value = "";
    }
  }

  ATTN.ready.then(function (texts) {
    var form = document.getElementById("login");
    if (!ATTN.initData()) {
      form.hidden = true;
      verdict(texts["webapp.login.no_launch"] || "", "bad");
      return;
    }
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var button = document.getElementById("submit");
      button.disabled = true;
      verdict(texts["webapp.login.working"] || "…", "wait");
      ATTN.post("/app/api/login", {
        username: document.getElementById("username").value.trim(),
        password: document.getElementById("password").value,
      }).then(answered, function () {
        button.disabled = false;
        verdict(texts["webapp.error"] || "Error", "bad");
      });
    });
    document.body.setAttribute("data-ready", "1");
  });
})();
