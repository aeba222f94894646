"""``GET /api/docs``: a self-contained page that renders ``/api/openapi.json`` offline.

No CDN, no framework: a few lines of vanilla JavaScript list every operation with its
parameters, body and responses, and resolve schema references on demand.
"""

from __future__ import annotations

from albatross.services.gateway.problems import STATUS_OF, TITLES

_PROBLEMS = "\n".join(
    f'<tr id="problem-{code}"><td><code>{code}</code></td><td>{STATUS_OF[code]}</td>'
    f"<td>{TITLES[code]}</td></tr>" for code in STATUS_OF)

DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Albatross API</title>
<style>
 body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1000px;padding:1em;color:#222}
 h1{margin-bottom:.2em} .op{border:1px solid #ddd;border-radius:6px;margin:.6em 0}
 .op summary{cursor:pointer;padding:.5em .7em;font-family:monospace;font-size:14px}
 .m{display:inline-block;width:4.5em;font-weight:bold} .GET{color:#0a6}.POST{color:#06c}
 .DELETE{color:#c30} .body{padding:0 1em 1em} pre{background:#f6f6f6;padding:.6em;overflow:auto;
 font-size:12px} table{border-collapse:collapse} td,th{border:1px solid #ddd;padding:2px 8px}
 .lock{color:#999;font-size:12px}
</style></head><body>
<h1>Albatross API</h1>
<p id="intro">Loading <a href="/api/openapi.json">/api/openapi.json</a>&hellip;</p>
<div id="ops"></div>
<h2>Problem codes</h2>
<p>Every error is <code>application/problem+json</code> (RFC 9457) with a stable
<code>code</code>.</p>
<table><tr><th>code</th><th>status</th><th>title</th></tr>
__PROBLEMS__
</table>
<script>
"use strict";
const el = (tag, attrs, ...kids) => {
  const node = document.createElement(tag);
  Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
  kids.forEach(k => node.append(k));
  return node;
};
const pretty = v => el("pre", {}, JSON.stringify(v, null, 2));
function resolve(spec, schema, depth) {
  if (!schema || depth > 4) return schema;
  if (schema.$ref) {
    const name = schema.$ref.split("/").pop();
    return resolve(spec, spec.components.schemas[name], depth + 1);
  }
  if (Array.isArray(schema)) return schema.map(s => resolve(spec, s, depth + 1));
  if (typeof schema !== "object") return schema;
  const out = {};
  for (const [k, v] of Object.entries(schema)) out[k] = resolve(spec, v, depth + 1);
  return out;
}
fetch("/api/openapi.json").then(r => r.json()).then(spec => {
  document.getElementById("intro").textContent = spec.info.description;
  const ops = document.getElementById("ops");
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const m = method.toUpperCase();
      const body = el("div", {class: "body"}, el("p", {}, op.summary));
      if (op.parameters) {
        body.append(el("h4", {}, "Parameters"));
        const t = el("table", {}, el("tr", {}, el("th", {}, "name"), el("th", {}, "in"),
                                      el("th", {}, "description")));
        op.parameters.forEach(p => t.append(el("tr", {}, el("td", {}, p.name),
          el("td", {}, p.in), el("td", {}, p.description || ""))));
        body.append(t);
      }
      if (op.requestBody) {
        body.append(el("h4", {}, "Request body"),
          pretty(resolve(spec, op.requestBody.content["application/json"].schema, 0)));
      }
      body.append(el("h4", {}, "Responses"));
      for (const [status, r] of Object.entries(op.responses)) {
        body.append(el("p", {}, el("b", {}, status + " "), r.description));
        const c = r.content && r.content["application/json"];
        if (c) body.append(pretty(resolve(spec, c.schema, 0)));
      }
      const lock = op.security && op.security.length ? " \\u{1F512}" : "";
      ops.append(el("details", {class: "op"},
        el("summary", {}, el("span", {class: "m " + m}, m), path,
           el("span", {class: "lock"}, lock)), body));
    }
  }
}).catch(e => { document.getElementById("intro").textContent = "Could not load: " + e; });
</script></body></html>
""".replace("__PROBLEMS__", _PROBLEMS)
