/*-------------------------------------------------------------------------
 *
 * serve_assets.c
 *		The style sheet and the script of pgbatch serve's pages, served as
 *		/app.css and /app.js (the content security policy allows no inline
 *		script or style).  The script keeps the page live: it listens to
 *		the page's event stream and, on a change, fetches the page again
 *		and replaces its live sections, except one the user is editing.  It
 *		also checks that an edited payload is JSON before sending it (the
 *		server validates it in any case), and asks before cancelling a
 *		batch.
 *
 * cli/serve_assets.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include "pgbatch_serve.h"

const char	pgbw_css[] =
"body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}\n"
"header{display:flex;gap:1em;align-items:center;padding:.6em 1.2em;background:#1d2430;color:#fff}\n"
"header a.home{color:#fff;font-weight:600;text-decoration:none}\n"
"header .who{margin-left:auto}header form{margin:0}\n"
".live{font-size:.8em;color:#9aa3b2}.live.on{color:#7bd88f}\n"
"main{max-width:72em;margin:0 auto;padding:1em 1.2em}\n"
"h1{font-size:1.5em;margin:.4em 0}h2{font-size:1.15em;margin:1.4em 0 .4em}\n"
"h3{font-size:1em;margin:0 0 .3em}\n"
"table{border-collapse:collapse;width:100%;background:#fff}\n"
"th,td{text-align:left;padding:.3em .5em;border-bottom:1px solid #e3e6eb;vertical-align:top}\n"
"td.num{text-align:right;font-variant-numeric:tabular-nums}td.wide,th.wide{width:40%}\n"
"td.message,p.message{white-space:pre-wrap;word-break:break-word}\n"
"td.error{color:#b3261e}td.warning{color:#8a5a00}\n"
"svg.bar{display:block;width:100%;height:1.1em;background:#e3e6eb;border-radius:3px}\n"
"rect.completed{fill:#2e8b57}rect.running{fill:#3b6fd8}rect.retrying{fill:#e0a800}\n"
"rect.pending{fill:#b8c0cc}rect.failed{fill:#c62828}rect.cancelled{fill:#6b7280}\n"
".legend .key{margin-right:1em;font-size:.9em}.legend .key::before{content:'';display:inline-block;"
"width:.8em;height:.8em;margin-right:.3em;border-radius:2px;vertical-align:-1px}\n"
".key.completed::before{background:#2e8b57}.key.running::before{background:#3b6fd8}\n"
".key.retrying::before{background:#e0a800}.key.pending::before{background:#b8c0cc}\n"
".key.failed::before{background:#c62828}.key.cancelled::before{background:#6b7280}\n"
".ratio{font-size:1.1em;font-weight:600;margin:.4em 0 0}\n"
".flash{padding:.5em .8em;background:#e7f4ea;border-left:4px solid #2e8b57}\n"
".flash.error{background:#fdecea;border-color:#c62828}\n"
"article.item{background:#fff;border:1px solid #e3e6eb;border-radius:4px;padding:.6em .8em;margin:.6em 0}\n"
"textarea{display:block;width:100%;box-sizing:border-box;font:13px/1.4 ui-monospace,monospace}\n"
".json-error{color:#b3261e;display:block;min-height:1.2em}\n"
"form.filters{margin:.6em 0;display:flex;gap:1em;align-items:center}\n"
"button{font:inherit;padding:.25em .8em;margin-right:.4em;cursor:pointer}\n"
"button.danger{color:#b3261e}\n"
".signin{max-width:22em;margin:3em auto}.signin label{display:block;margin:.6em 0}\n"
".signin input{display:block;width:100%;box-sizing:border-box;font:inherit;padding:.3em}\n"
".filters a.on{font-weight:600}.code{font-family:ui-monospace,monospace}\n";

const char	pgbw_js[] =
"'use strict';\n"
"(function () {\n"
"  var body = document.body, url = body.getAttribute('data-events');\n"
"  var live = document.getElementById('live'), timer = null, busy = false, again = false;\n"
"  /* a section the user is editing is left alone */\n"
"  function editing(section) {\n"
"    var a = document.activeElement;\n"
"    if (a && a !== body && section.contains(a) && /^(TEXTAREA|SELECT|INPUT)$/.test(a.tagName)) return true;\n"
"    var areas = section.querySelectorAll('textarea');\n"
"    for (var i = 0; i < areas.length; i++) if (areas[i].value !== areas[i].defaultValue) return true;\n"
"    return false;\n"
"  }\n"
"  function refresh() {\n"
"    if (busy) { again = true; return; }\n"
"    busy = true;\n"
"    fetch(location.href, {credentials: 'same-origin', cache: 'no-store'}).then(function (r) {\n"
"      if (r.redirected || !r.ok) throw new Error('status ' + r.status);\n"
"      return r.text();\n"
"    }).then(function (html) {\n"
"      var doc = new DOMParser().parseFromString(html, 'text/html');\n"
"      document.querySelectorAll('[data-live]').forEach(function (old) {\n"
"        var fresh = doc.getElementById(old.id);\n"
"        if (fresh && !editing(old)) old.replaceWith(document.importNode(fresh, true));\n"
"      });\n"
"      body.setAttribute('data-refreshed', String(Number(body.getAttribute('data-refreshed') || 0) + 1));\n"
"    }).catch(function () {}).finally(function () {\n"
"      busy = false;\n"
"      if (again) { again = false; schedule(); }\n"
"    });\n"
"  }\n"
"  function schedule() {\n"
"    if (!timer) timer = setTimeout(function () { timer = null; refresh(); }, 300);\n"
"  }\n"
"  if (url && window.EventSource) {\n"
"    var events = new EventSource(url);\n"
"    events.addEventListener('change', schedule);\n"
"    /* on each (re)connection, catch up with what happened meanwhile */\n"
"    events.onopen = function () { live.textContent = 'live'; live.className = 'live on'; schedule(); };\n"
"    events.onerror = function () { live.textContent = 'reconnecting'; live.className = 'live'; };\n"
"  }\n"
"  document.addEventListener('submit', function (e) {\n"
"    var form = e.target;\n"
"    if (form.classList.contains('cancel') && !window.confirm('Cancel the waiting items of this batch?')) {\n"
"      e.preventDefault();\n"
"      return;\n"
"    }\n"
"    if (!form.classList.contains('payload')) return;\n"
"    var area = form.querySelector('textarea'), out = form.querySelector('.json-error');\n"
"    try { JSON.parse(area.value); out.textContent = ''; }\n"
"    catch (err) { e.preventDefault(); out.textContent = 'Not JSON: ' + err.message; }\n"
"  });\n"
"})();\n";
