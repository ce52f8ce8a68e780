// tingzhen console script: preferences, live refresh, and every state-changing request.
// Writes go through tz.api, which adds the session's CSRF token and the anti-replay nonce and
// timestamp that identity requires; pages mark forms and buttons with data-api / data-action
// instead of carrying their own scripts (the CSP allows no inline script).
(function () {
  'use strict';

  function meta(name) {
    var m = document.querySelector('meta[name="' + name + '"]');
    return m ? m.getAttribute('content') : '';
  }

  function nonce() {
    var b = new Uint8Array(16);
    crypto.getRandomValues(b);
    return Array.prototype.map.call(b, function (x) { return ('0' + x.toString(16)).slice(-2); }).join('');
  }

  function toast(text, bad) {
    var t = document.getElementById('toast');
    if (!t) { return; }
    t.textContent = text;
    t.className = 'toast show' + (bad ? ' bad' : '');
    clearTimeout(t._timer);
    t._timer = setTimeout(function () { t.className = 'toast'; }, bad ? 6000 : 2500);
  }

  // Calls a JSON API; resolves with `data`, rejects with an Error carrying the server's message.
  function api(method, url, body) {
    var headers = { 'Accept': 'application/json', 'Accept-Language': meta('tz-lang') || 'zh-CN' };
    if (method !== 'GET') {
      headers['X-CSRF-Token'] = meta('csrf-token');
      headers['X-Request-Nonce'] = nonce();
      headers['X-Request-Timestamp'] = String(Date.now());
    }
    if (body !== undefined) { headers['Content-Type'] = 'application/json'; }
    return fetch(url, {
      method: method, headers: headers, credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (res) {
      return res.text().then(function (text) {
        var json = null;
        try { json = text ? JSON.parse(text) : {}; } catch (e) { json = null; }
        if (!res.ok || (json && json.status === 'error')) {
          var msg = json ? (json.message || json.error || res.statusText) : (text || res.statusText);
          if (json && json.rules && json.violations) { msg = msg + '\n' + json.rules; }
          var err = new Error(msg);
          err.status = res.status;
          err.body = json;
          throw err;
        }
        return json && json.data !== undefined ? json.data : json;
      });
    });
  }

  function setCookie(name, value) {
    document.cookie = name + '=' + encodeURIComponent(value) + '; path=/; max-age=31536000; SameSite=Strict';
  }

  // Collects a form's named fields into an object: checkboxes as booleans, number inputs as
  // numbers, data-json fields parsed, data-list fields split on commas or new lines.
  function formData(form) {
    var out = {};
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name || el.disabled) { return; }
      var v;
      if (el.type === 'checkbox') { v = el.checked; }
      else if (el.type === 'number') { v = el.value === '' ? null : Number(el.value); }
      else if (el.hasAttribute('data-json')) { v = el.value.trim() === '' ? null : JSON.parse(el.value); }
      else if (el.hasAttribute('data-list')) { v = el.value.split(/[\n,]/).map(function (s) { return s.trim(); }).filter(Boolean); }
      else if (el.multiple) { v = Array.prototype.filter.call(el.options, function (o) { return o.selected; }).map(function (o) { return o.value; }); }
      else { v = el.value; }
      if (el.hasAttribute('data-optional') && (v === '' || v === null)) { return; }
      out[el.name] = v;
    });
    return out;
  }

  function after(el, data) {
    var done = el.getAttribute('data-done');
    if (done) { toast(done); }
    var go = el.getAttribute('data-redirect');
    if (go) {
      location.href = go.replace('{id}', data && data.id !== undefined ? encodeURIComponent(data.id) : '');
    } else if (!el.hasAttribute('data-stay')) {
      setTimeout(function () { location.reload(); }, done ? 600 : 0);
    }
  }

  function failed(el, err) {
    var box = el.querySelector && el.querySelector('.error');
    if (box) { box.textContent = err.message; } else { toast(err.message, true); }
    if (err.status === 401) { setTimeout(function () { location.href = '/ui/login?next=' + encodeURIComponent(location.pathname + location.search); }, 1500); }
  }

  function wireForms() {
    document.querySelectorAll('form[data-api]').forEach(function (form) {
      form.addEventListener('submit', function (ev) {
        ev.preventDefault();
        var body;
        try { body = formData(form); } catch (e) { failed(form, e); return; }
        var method = (form.getAttribute('data-method') || 'POST').toUpperCase();
        var url = form.getAttribute('data-api');
        Object.keys(body).forEach(function (k) {
          if (url.indexOf('{' + k + '}') >= 0) { url = url.replace('{' + k + '}', encodeURIComponent(body[k])); }
        });
        var box = form.querySelector('.error');
        if (box) { box.textContent = ''; }
        api(method, url, method === 'DELETE' ? undefined : body).then(function (data) {
          var out = form.querySelector('[data-result]');
          if (out) { out.textContent = typeof data === 'string' ? data : JSON.stringify(data, null, 2); }
          after(form, data);
        }, function (err) { failed(form, err); });
      });
    });
    document.querySelectorAll('[data-action]').forEach(function (btn) {
      btn.addEventListener('click', function () {
        var q = btn.getAttribute('data-confirm');
        if (q && !confirm(q)) { return; }
        var method = (btn.getAttribute('data-method') || 'POST').toUpperCase();
        var raw = btn.getAttribute('data-body');
        var body = raw ? JSON.parse(raw) : (method === 'DELETE' ? undefined : {});
        btn.disabled = true;
        api(method, btn.getAttribute('data-action'), body).then(function (data) {
          btn.disabled = false;
          after(btn, data);
        }, function (err) { btn.disabled = false; failed(btn, err); });
      });
    });
  }

  function wireRefresh() {
    document.querySelectorAll('[data-refresh]').forEach(function (el) {
      var every = Math.max(1, Number(el.getAttribute('data-every') || 10)) * 1000;
      setInterval(function () {
        if (document.hidden) { return; }
        // Marked as background so identity does not count it as activity: an unattended
        // screen still reaches the idle timeout (MLPS session rule).
        fetch(el.getAttribute('data-refresh'), { credentials: 'same-origin', headers: { 'X-TZ-Refresh': '1' } }).then(function (res) {
          if (res.redirected || res.status === 401) { location.reload(); return null; }
          return res.ok ? res.text() : null;
        }).then(function (html) {
          if (html !== null && html !== undefined) { el.innerHTML = html; }
        }, function () { /* a missed refresh is retried at the next tick */ });
      }, every);
    });
  }

  function wirePrefs() {
    document.querySelectorAll('select[data-pref]').forEach(function (sel) {
      sel.addEventListener('change', function () {
        setCookie(sel.getAttribute('data-pref'), sel.value);
        location.reload();
      });
    });
    var toggle = document.querySelector('[data-toggle="nav"]');
    if (toggle) { toggle.addEventListener('click', function () { document.getElementById('nav').classList.toggle('open'); }); }
    var logout = document.querySelector('[data-logout]');
    if (logout) {
      logout.addEventListener('click', function () {
        api('POST', '/api/v1/auth/logout').then(function () { location.href = '/ui/login'; }, function () { location.href = '/ui/login'; });
      });
    }
  }

  function wireLogin() {
    var form = document.getElementById('login-form');
    if (!form) { return; }
    var captchaId = null;
    function loadCaptcha() {
      return api('GET', '/api/v1/auth/captcha').then(function (c) {
        captchaId = c.id;
        document.getElementById('captcha-img').src = c.image;
        document.getElementById('captcha-box').hidden = false;
        document.getElementById('captcha').value = '';
      });
    }
    document.getElementById('captcha-refresh').addEventListener('click', loadCaptcha);
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var body = { username: document.getElementById('username').value, password: document.getElementById('password').value };
      if (captchaId) { body.captcha_id = captchaId; body.captcha_answer = document.getElementById('captcha').value; }
      var totp = document.getElementById('totp').value;
      if (totp) { body.totp = totp; }
      var error = document.getElementById('login-error');
      error.textContent = '';
      api('POST', '/api/v1/auth/login', body).then(function (s) {
        if (s.restriction === 'password_change') { location.href = '/ui/password'; }
        else if (s.restriction === 'totp_enrolment') { location.href = '/ui/totp'; }
        else { location.href = form.getAttribute('data-next') || '/ui/'; }
      }, function (err) {
        error.textContent = err.message;
        if (err.body && err.body.error === 'totp_required') { document.getElementById('totp-box').hidden = false; }
        captchaId = null;
        document.getElementById('captcha-box').hidden = true;
        if (err.body && err.body.captcha_required) { loadCaptcha(); }
      });
    });
  }

  // Forgot password (pages/auth.rs, /ui/reset): step 1 sends the account name, the phone number
  // and a solved captcha (each image allows one guess, so a new one is loaded after every try);
  // its answer is the same whether or not they matched, and reveals step 2: the code and the new
  // password, for the account named in step 1.
  function wireReset() {
    var form = document.getElementById('reset-request-form');
    if (!form) { return; }
    var captchaId = null;
    var username = '';
    var step2 = document.getElementById('reset-step2');
    function loadCaptcha() {
      captchaId = null;
      document.getElementById('reset-captcha').value = '';
      return api('GET', '/api/v1/auth/captcha').then(function (c) {
        captchaId = c.id;
        document.getElementById('reset-captcha-img').src = c.image;
      }, function (err) { document.getElementById('reset-request-error').textContent = err.message; });
    }
    document.getElementById('reset-captcha-refresh').addEventListener('click', loadCaptcha);
    loadCaptcha();
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var error = document.getElementById('reset-request-error');
      var done = document.getElementById('reset-request-done');
      var submit = document.getElementById('reset-request-submit');
      error.textContent = '';
      done.textContent = '';
      var body = { username: document.getElementById('reset-username').value.trim(), phone: document.getElementById('reset-phone').value.trim() };
      if (captchaId) { body.captcha_id = captchaId; body.captcha_answer = document.getElementById('reset-captcha').value; }
      submit.disabled = true;
      api('POST', '/api/v1/auth/reset/request', body).then(function (r) {
        submit.disabled = false;
        username = body.username;
        done.textContent = r.message;
        step2.hidden = false;
        document.getElementById('reset-code').focus();
        loadCaptcha();
      }, function (err) {
        submit.disabled = false;
        error.textContent = err.message;
        loadCaptcha();
      });
    });
    var confirmForm = document.getElementById('reset-confirm-form');
    confirmForm.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var error = document.getElementById('reset-confirm-error');
      var submit = document.getElementById('reset-confirm-submit');
      error.textContent = '';
      var nw = document.getElementById('reset-new-password').value;
      if (nw !== document.getElementById('reset-repeat-password').value) { error.textContent = confirmForm.getAttribute('data-mismatch'); return; }
      submit.disabled = true;
      // A refused password answers the broken rules and the full rule text (api() adds it).
      api('POST', '/api/v1/auth/reset/confirm', { username: username, code: document.getElementById('reset-code').value.trim(), new_password: nw })
        .then(function (r) {
          form.hidden = true;
          step2.hidden = true;
          document.getElementById('reset-done-message').textContent = r.message;
          document.getElementById('reset-done').hidden = false;
        }, function (err) { submit.disabled = false; error.textContent = err.message; });
    });
  }

  function wirePassword() {
    var form = document.getElementById('password-form');
    if (!form) { return; }
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var error = document.getElementById('password-error');
      var nw = document.getElementById('new-password').value;
      if (nw !== document.getElementById('repeat-password').value) { error.textContent = form.getAttribute('data-mismatch'); return; }
      api('POST', '/api/v1/auth/password', { old_password: document.getElementById('old-password').value, new_password: nw })
        .then(function () { toast(form.getAttribute('data-done')); setTimeout(function () { location.href = '/ui/'; }, 600); },
              function (err) { error.textContent = err.message; });
    });
  }

  function wireTotp() {
    var form = document.getElementById('totp-form');
    if (!form) { return; }
    api('POST', '/api/v1/auth/totp/enroll', {}).then(function (e) {
      document.getElementById('totp-secret').textContent = e.secret;
      document.getElementById('totp-uri').textContent = e.otpauth_uri;
      var qr = document.getElementById('totp-qr');
      if (e.qr_svg) { qr.src = 'data:image/svg+xml;base64,' + btoa(e.qr_svg); qr.hidden = false; }
    }, function (err) { document.getElementById('totp-error').textContent = err.message; });
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      api('POST', '/api/v1/auth/totp/confirm', { code: document.getElementById('totp-code').value })
        .then(function () { location.href = '/ui/'; }, function (err) { document.getElementById('totp-error').textContent = err.message; });
    });
  }

  window.tz = { api: api, toast: toast, formData: formData };
  document.addEventListener('DOMContentLoaded', function () {
    wirePrefs(); wireForms(); wireRefresh(); wireLogin(); wireReset(); wirePassword(); wireTotp();
  });
})();

// ---- users / audit / account (pages/users.rs, audit.rs, account.rs) ----
// Bulk account actions: a [data-bulk="disable|enable|cancel|unfreeze"] button posts the
// usernames of its data-users attribute, or else of the checked [data-select] boxes, to
// identity's /api/v1/users/bulk, then names every account identity refused before reloading.
// Forms with data-match="field" are only sent when that field equals their [data-repeat] input.
(function () {
  'use strict';
  document.addEventListener('submit', function (ev) {
    var form = ev.target;
    if (!form.hasAttribute || !form.hasAttribute('data-match')) { return; }
    var field = form.elements[form.getAttribute('data-match')];
    var repeat = form.querySelector('[data-repeat]');
    if (field && repeat && field.value !== repeat.value) {
      ev.preventDefault();
      ev.stopImmediatePropagation();
      var box = form.querySelector('.error');
      if (box) { box.textContent = form.getAttribute('data-mismatch') || ''; }
    }
  }, true);

  document.addEventListener('DOMContentLoaded', function () {
    document.querySelectorAll('[data-select-all]').forEach(function (all) {
      all.addEventListener('change', function () {
        var table = all.closest('table') || document;
        table.querySelectorAll('input[data-select]').forEach(function (c) { c.checked = all.checked; });
      });
    });
    document.querySelectorAll('button[data-bulk]').forEach(function (btn) {
      btn.addEventListener('click', function () {
        var names = btn.hasAttribute('data-users')
          ? btn.getAttribute('data-users').split(',').filter(Boolean)
          : Array.prototype.map.call(document.querySelectorAll('input[data-select]:checked'), function (c) { return c.value; });
        if (!names.length) { window.tz.toast(btn.getAttribute('data-empty') || '', true); return; }
        var q = btn.getAttribute('data-confirm');
        if (q && !confirm(q)) { return; }
        btn.disabled = true;
        window.tz.api('POST', '/api/v1/users/bulk', { action: btn.getAttribute('data-bulk'), usernames: names }).then(function (results) {
          var bad = (results || []).filter(function (r) { return !r.ok; });
          if (bad.length) {
            window.tz.toast((btn.getAttribute('data-failed') || '') + '\n' + bad.map(function (r) { return r.username + ': ' + r.error; }).join('\n'), true);
            setTimeout(function () { location.reload(); }, 5000);
          } else {
            location.reload();
          }
        }, function (err) { btn.disabled = false; window.tz.toast(err.message, true); });
      });
    });
  });
})();

// ---- alert and configuration pages (pages/alerts.rs, pages/config/) ----
// Acknowledge buttons live in a table that live refresh replaces, so their clicks are handled
// by delegation; the rule preview and receiver test show the server's answer in a <pre>.
(function () {
  'use strict';

  function box(id) { return id ? document.getElementById(id) : null; }

  document.addEventListener('click', function (ev) {
    var btn = ev.target && ev.target.closest ? ev.target.closest('button[data-ack]') : null;
    if (!btn) { return; }
    var comment = prompt(btn.getAttribute('data-prompt') || '', '');
    if (comment === null) { return; }
    btn.disabled = true;
    window.tz.api('POST', '/ui/api/alerts/ack', { fingerprint: btn.getAttribute('data-ack'), comment: comment }).then(function () {
      window.tz.toast(btn.getAttribute('data-done') || '');
      btn.textContent = '✓';
    }, function (err) { btn.disabled = false; window.tz.toast(err.message, true); });
  });

  document.addEventListener('DOMContentLoaded', function () {
    document.querySelectorAll('button[data-preview]').forEach(function (btn) {
      btn.addEventListener('click', function () {
        var out = box(btn.getAttribute('data-target'));
        var err = box(btn.getAttribute('data-error'));
        var src = box(btn.getAttribute('data-source'));
        if (err) { err.textContent = ''; }
        if (out) { out.textContent = '…'; out.classList.remove('bad'); }
        btn.disabled = true;
        window.tz.api('POST', btn.getAttribute('data-preview'), { yaml: src ? src.value : '' }).then(function (text) {
          btn.disabled = false;
          if (out) { out.textContent = typeof text === 'string' ? text : JSON.stringify(text, null, 2); }
        }, function (e) {
          btn.disabled = false;
          if (out) { out.textContent = ''; }
          if (err) { err.textContent = e.message; } else { window.tz.toast(e.message, true); }
        });
      });
    });
    document.querySelectorAll('button[data-test-send]').forEach(function (btn) {
      btn.addEventListener('click', function () {
        var q = btn.getAttribute('data-confirm');
        if (q && !confirm(q)) { return; }
        var out = box(btn.getAttribute('data-target'));
        if (out) { out.textContent = '…'; out.classList.remove('bad'); }
        btn.disabled = true;
        window.tz.api('POST', btn.getAttribute('data-test-send'), {}).then(function (r) {
          btn.disabled = false;
          if (out) { out.textContent = r.text; out.classList.toggle('bad', !r.ok); }
        }, function (e) {
          btn.disabled = false;
          if (out) { out.textContent = e.message; out.classList.add('bad'); }
        });
      });
    });
  });
})();
