// The operator view: /operator/status.json every 2 s (the browser resends the login it was
// asked for, if any). Values are set as text, never as HTML.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const kv = (o) => Object.entries(o || {}).map(([k, v]) => `${k} ${v}`).join(", ");
  function show(s) {
    $("model").textContent = `${s.architecture || ""} ${s.model || ""} (sha256 ${String(s.model_sha256 || "").slice(0, 12)})`;
    $("backend").textContent = s.backend;
    $("fps").textContent = s.fps;
    const th = s.refer_threshold;
    $("threshold").textContent = th ? `${th.value} (${th.source})` : "-";
    const c = s.camera || {};
    $("camera").textContent = `${c.state} · ${c.uri}${c.error ? ` · ${c.error}` : ""}`;
    const d = s.last_decision;
    $("last").textContent = d ? `${d.decision} · ${d.reason} · ${d.name || `frame ${d.frame}`}` : "-";
    $("frames").textContent = kv(s.frames);
    $("ui").textContent = kv(s.ui);
    $("uptime").textContent = s.uptime_s;
    const errs = (s.errors || []).map((e) => `${e.time} ${e.level} ${e.message}`);
    $("errors").textContent = errs.length ? errs.reverse().join("\n") : $("errors").dataset.none;
  }
  async function refresh() {
    try {
      const r = await fetch("/operator/status.json", { cache: "no-store" });
      if (r.ok) show(await r.json());
    } catch (e) {
      $("errors").textContent = String(e);
    }
    setTimeout(refresh, 2000);
  }
  refresh();
})();
